"""Calendar inputs: where in the day (and week) each step of a window lies, for strongly seasonal series.

A window of 32 points at 5-minute intervals spans under three hours: nothing in it says whether a flat
stretch is the usual night or a missing daytime step. With `model.calendar` the model also sees the
phase of each step in the period as (sin, cos), so it can learn the level that belongs to each time of
day. The columns are appended after normalisation, scaled to unit variance like the normalised features
(in [-1, 1], some training seeds fitted the phase of a daily step badly and re-alerted on it every day),
and are inputs only: a window's score is the error of its real features.

`auto` adds a period only when the training data is dominated by it (its values at one period's
distance correlate at `AUTO_CORRELATION` or more, over at least two periods of data): for weakly
seasonal series the model overfits the time of day from the few periods of training data and loses
more than it gains (docs/evaluation.md).

Each step's time is interpolated between the window's first and last timestamp, which is exact for
regular series and the same in training and scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from monitor.engine.scoring import Times

PERIODS = {"day": 86_400.0, "week": 7 * 86_400.0}
SETTINGS = ("auto", "none", "day", "week", "day+week")
SCALE = float(np.sqrt(2.0))
"""sin and cos of a uniform phase have variance 1/2: scaled, they vary like the normalised features."""
AUTO_CORRELATION = 0.9
"""`auto`: the smallest median autocorrelation at one period's lag that makes a period an input."""


def explicit(setting: str) -> tuple[str, ...] | None:
    """The periods a setting names, or None for `auto` (decided from the training data)."""
    if setting == "auto":
        return None
    return () if setting == "none" else tuple(setting.split("+"))


def choose(setting: str, series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> tuple[str, ...]:
    """The periods to use for `series` (name → (ts (T,), values (T, F))): named ones, or those that
    `auto` finds in the data (median over series; a series too short to tell counts as not seasonal)."""
    named = explicit(setting)
    if named is not None:
        return named
    chosen = []
    for period, seconds in PERIODS.items():
        correlations = [_autocorrelation(ts, values, seconds) for ts, values in series.values()]
        if correlations and float(np.median(correlations)) >= AUTO_CORRELATION:
            chosen.append(period)
    return tuple(chosen)


def with_calendar(normalised: np.ndarray, start: Times, end: Times, periods: Sequence[str]) -> np.ndarray:
    """(B, window, F) normalised windows with the calendar columns of `periods` appended (as they are
    when there are none): what the model takes, built alike in training and scoring."""
    if not periods:
        return normalised
    calendar = columns(start, end, normalised.shape[1], periods)
    return np.concatenate([normalised, calendar.astype(normalised.dtype)], axis=2)


def columns(start: Times, end: Times, window: int, periods: Sequence[str]) -> np.ndarray:
    """(B, window, 2 · len(periods)) float32: sin and cos of each step's phase in each period, times `SCALE`."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    fraction = np.linspace(0.0, 1.0, window) if window > 1 else np.zeros(1)
    times = start[:, None] + (end - start)[:, None] * fraction[None, :]
    out = np.empty((len(start), window, 2 * len(periods)), dtype=np.float32)
    for k, period in enumerate(periods):
        angle = (2 * np.pi / PERIODS[period]) * np.mod(times, PERIODS[period])
        out[:, :, 2 * k], out[:, :, 2 * k + 1] = SCALE * np.sin(angle), SCALE * np.cos(angle)
    return out


def _autocorrelation(ts: np.ndarray, values: np.ndarray, period: float) -> float:
    """Mean over features of the correlation of values one period apart (0 when it cannot be told)."""
    if len(ts) < 3:
        return 0.0
    step = float(np.median(np.diff(ts)))
    lag = round(period / step) if step > 0 else 0
    if lag < 1 or ts[-1] - ts[0] < 2 * period - step or lag >= len(values):
        return 0.0
    result = []
    for f in range(values.shape[1]):
        a, b = values[:-lag, f], values[lag:, f]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 3:
            result.append(0.0)
            continue
        a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
        norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
        result.append(float((a * b).sum()) / norm if norm > 0 else 0.0)
    return float(np.mean(result))
