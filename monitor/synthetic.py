"""Synthetic metric streams with injected anomalies, for the demo, the tests and the benchmarks.

Each series is a noisy seasonal signal with its own level, amplitude and phase. The first `healthy`
points of every series are clean, so a model can be trained on them; after that, some series get one
anomaly each, of a known kind and time span, returned as ground truth. `paced` plays a stream out in
real time, so the demo shows alerts arriving live.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from monitor.records import UNIVARIATE, Point

KINDS = ("spike", "level_shift", "noise_burst", "flatline")
DURATION = {"spike": 3, "level_shift": 24, "noise_burst": 24, "flatline": 32}


@dataclass(frozen=True, slots=True)
class StreamSpec:
    series: int = 8
    points: int = 2000
    healthy: int = 800
    """Points at the head of every series with no anomaly (the training range)."""
    anomalous_series: int = 4
    period: int = 48
    step_s: float = 60.0
    start_ts: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    noise: float = 0.05
    seed: int = 7


@dataclass(frozen=True, slots=True)
class Anomaly:
    series: str
    kind: str
    start_ts: float
    end_ts: float


def series_name(i: int) -> str:
    return f"host-{i:02d}/cpu"


def generate(spec: StreamSpec) -> tuple[np.ndarray, list[Anomaly]]:
    """The values, shape (series, points), and the injected anomalies."""
    rng = np.random.default_rng(spec.seed)
    t = np.arange(spec.points)
    level = rng.uniform(0.3, 0.6, (spec.series, 1))
    amplitude = rng.uniform(0.1, 0.3, (spec.series, 1))
    phase = rng.uniform(0, 2 * np.pi, (spec.series, 1))
    values = level + amplitude * np.sin(2 * np.pi * t / spec.period + phase)
    values += rng.normal(0.0, spec.noise, values.shape) * amplitude
    anomalies = []
    for i in range(min(spec.anomalous_series, spec.series)):
        kind = KINDS[i % len(KINDS)]
        span = DURATION[kind]
        start = int(rng.integers(spec.healthy + spec.period, spec.points - span - spec.period))
        _inject(values[i], kind, start, span, float(amplitude[i, 0]), rng)
        ts = spec.start_ts + spec.step_s * np.array([start, start + span - 1])
        anomalies.append(Anomaly(series_name(i), kind, float(ts[0]), float(ts[1])))
    return values, anomalies


def _inject(row: np.ndarray, kind: str, start: int, span: int, amplitude: float, rng: np.random.Generator) -> None:
    part = slice(start, start + span)
    if kind == "spike":
        row[part] += 3.0 * amplitude
    elif kind == "level_shift":
        row[part] += 1.5 * amplitude
    elif kind == "noise_burst":
        row[part] += rng.normal(0.0, 0.8 * amplitude, span)
    else:  # flatline: a stuck sensor repeats its last value
        row[part] = row[start - 1]


def points(spec: StreamSpec, values: np.ndarray, first: int = 0, last: int | None = None) -> Iterator[Point]:
    """Points in time order, interleaved across series, for time steps [first, last)."""
    last = spec.points if last is None else last
    for step in range(first, last):
        ts = spec.start_ts + spec.step_s * step
        for i in range(spec.series):
            yield Point(series_name(i), ts, {UNIVARIATE: round(float(values[i, step]), 6)}, {"host": f"host-{i:02d}"})


def paced(stream: Iterable[Point], rate: float) -> Iterator[Point]:
    """Yield points no faster than `rate` per second (0: unpaced)."""
    started = time.monotonic()
    for n, point in enumerate(stream):
        if rate > 0:
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield point
