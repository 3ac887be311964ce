"""Rolling per-series thresholds on the anomaly score: mean + k·sd of the last `history` normal scores.

Every series starts from the same statistics, the healthy validation scores that come with the model, so
it can be judged after a short warm-up instead of after `history` windows. Scores judged anomalous are
kept out of the statistics: otherwise a long incident would raise its own threshold and hide itself.

What is judged is the mean of a series' last `smoothing` scores, not one window's score: a single
reconstruction error is noisy and heavy-tailed, while a short average rises with a real change of
behaviour and barely moves for one odd point (the short-term average of Numenta's anomaly likelihood).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class ThresholdSettings:
    warmup: int = 16
    """Windows of a series that are scored and learned from, but never judged anomalous."""
    history: int = 2000
    """How many recent normal scores the statistics cover."""
    k: float = 6.0
    """Standard deviations above the mean that make a score anomalous."""
    minimum: float = 0.0
    """A floor for the threshold, for series so regular that their deviation is near zero."""
    smoothing: int = 20
    """Windows averaged into the judged score (the series' last `smoothing` scores); 1 judges each alone."""


@dataclass(frozen=True, slots=True)
class Judgement:
    threshold: float
    anomalous: bool
    warming_up: bool
    score: float
    """What was compared with the threshold: the mean of the series' last `smoothing` scores."""


class _Rolling:
    """A bounded window of scores with running sums, so each update costs O(1)."""

    def __init__(self, seed: Sequence[float], history: int, smoothing: int = 1) -> None:
        self.judged = 0
        self.values: deque[float] = deque(maxlen=history)
        self.total = 0.0
        self.total_sq = 0.0
        self.recent: deque[float] = deque(maxlen=smoothing)
        for value in seed[-history:]:
            self.push(float(value))

    def smoothed(self, score: float) -> float:
        """Add a score to the recent ones and return their mean (summed afresh: at most `smoothing` terms)."""
        self.recent.append(score)
        return math.fsum(self.recent) / len(self.recent)

    def push(self, value: float) -> None:
        if len(self.values) == self.values.maxlen:
            old = self.values[0]
            self.total -= old
            self.total_sq -= old * old
        self.values.append(value)
        self.total += value
        self.total_sq += value * value

    def mean_sd(self) -> tuple[float, float]:
        n = len(self.values)
        if n == 0:
            return 0.0, 0.0
        mean = self.total / n
        return mean, math.sqrt(max(self.total_sq / n - mean * mean, 0.0))


class ThresholdBank:
    """The thresholds of all series of one detector."""

    def __init__(self, settings: ThresholdSettings, baseline: np.ndarray) -> None:
        self.settings = settings
        seed = _evenly(_moving_mean(np.asarray(baseline, dtype=float), settings.smoothing), settings.history)
        self._seed = seed.tolist()
        """Python floats, shared by every new series' history until its own scores replace them: a new series
        then costs a pointer per seed value, not a float object (8 instead of 32 bytes each)."""
        self._series: dict[str, _Rolling] = {}

    def judge(self, series: str, score: float) -> Judgement:
        """Compare the series' smoothed score with its current threshold, then learn from it if it was normal."""
        rolling = self._state(series)
        mean, sd = rolling.mean_sd()
        threshold = max(mean + self.settings.k * sd, self.settings.minimum)
        warming_up = rolling.judged < self.settings.warmup
        level = rolling.smoothed(score)
        anomalous = not warming_up and level > threshold
        rolling.judged += 1
        if not anomalous:
            rolling.push(level)
        return Judgement(threshold, anomalous, warming_up, level)

    def forget(self, series: str) -> None:
        self._series.pop(series, None)

    def snapshot(self, series: str) -> dict[str, Any] | None:
        """The series' statistics, running sums included, so a restored series judges exactly as before."""
        rolling = self._series.get(series)
        if rolling is None:
            return None
        values = np.array(rolling.values, dtype=float)
        return {
            "judged": rolling.judged,
            "values": values,
            "total": rolling.total,
            "total_sq": rolling.total_sq,
            "recent": np.array(rolling.recent, dtype=float),
        }

    def restore(self, series: str, state: Mapping[str, Any]) -> None:
        """Rebuild a series' statistics from `snapshot`."""
        rolling = _Rolling([], self.settings.history, self.settings.smoothing)
        rolling.recent.extend(float(v) for v in state.get("recent", ()))  # absent in checkpoints before smoothing
        values = [float(v) for v in state["values"]]
        if len(values) <= self.settings.history:
            rolling.values.extend(values)
            rolling.total, rolling.total_sq = float(state["total"]), float(state["total_sq"])
        else:  # `history` shrank since the snapshot: keep the newest scores, sums recomputed
            for value in values[-self.settings.history :]:
                rolling.push(value)
        rolling.judged = int(state["judged"])
        self._series[series] = rolling

    def _state(self, series: str) -> _Rolling:
        state = self._series.get(series)
        if state is None:
            state = self._series[series] = _Rolling(self._seed, self.settings.history, self.settings.smoothing)
        return state


def _moving_mean(values: np.ndarray, n: int) -> np.ndarray:
    """Means of n consecutive values: the seed must hold smoothed scores, like the ones it is compared with."""
    if n <= 1 or len(values) == 0:
        return values
    if len(values) < n:
        return np.array([values.mean()])
    return np.convolve(values, np.full(n, 1.0 / n), mode="valid")


def _evenly(values: np.ndarray, n: int) -> np.ndarray:
    """At most n values spread evenly over the array, keeping its distribution."""
    if len(values) <= n:
        return values
    return values[np.linspace(0, len(values) - 1, n).round().astype(int)]
