"""Synthetic seasonal series shared by the model tests: sines of period 24 with 5 % noise.

Three training series with different levels and scales, so per-series normalisation matters; any other
name gets its own level and phase (a series the model never saw). `sine` is the operator's fleet of
issue 18: one level and scale, any phase.
"""

from __future__ import annotations

import numpy as np

from monitor.models import SeriesData

WINDOW = 24
HISTORY_POINTS = 480
SERIES = {"web-01/cpu": (0.0, 1.0), "web-02/cpu": (10.0, 3.0), "db-01/cpu": (-5.0, 0.5)}


def seasonal(name: str, start: int, count: int) -> np.ndarray:
    """Points [start, start + count) of series `name` as (count, 1): a sine of period 24 plus 5 % noise."""
    offset, scale = SERIES.get(name, (4.0, 2.0))
    t = np.arange(start, start + count)
    noise = np.random.default_rng([start, len(name)]).standard_normal(count)
    phase = 5 * list(SERIES).index(name) if name in SERIES else 11
    return (offset + scale * (np.sin(2 * np.pi * (t + phase) / 24) + 0.05 * noise))[:, None]


def future_windows(name: str, count: int) -> np.ndarray:
    """(count, WINDOW, 1) windows of `name` taken after the training history, one point apart."""
    values = seasonal(name, HISTORY_POINTS, count + WINDOW - 1)
    return np.stack([values[i : i + WINDOW] for i in range(count)])


def history(points: int = HISTORY_POINTS) -> dict[str, SeriesData]:
    return {name: SeriesData(ts=1.7e9 + 60.0 * np.arange(points), values=seasonal(name, 0, points)) for name in SERIES}


def sine(phase: float, start: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Points [start, start + count) of `sin(i / 30 + phase) + N(0, 0.05)`, the noise drawn from `rng`."""
    i = np.arange(start, start + count)
    return np.sin(i / 30 + phase) + rng.normal(0.0, 0.05, count)
