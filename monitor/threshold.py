"""Rolling per-series thresholds on the anomaly score: mean + k·sd of the last `history` normal scores.

Every series starts from the same statistics, the healthy validation scores that come with the model, so
it can be judged after a short warm-up instead of after `history` windows. Scores judged anomalous are
kept out of the statistics: otherwise a long incident would raise its own threshold and hide itself.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class ThresholdSettings:
    warmup: int = 16
    """Windows of a series that are scored and learned from, but never judged anomalous."""
    history: int = 512
    """How many recent normal scores the statistics cover."""
    k: float = 4.0
    """Standard deviations above the mean that make a score anomalous."""
    minimum: float = 0.0
    """A floor for the threshold, for series so regular that their deviation is near zero."""


@dataclass(frozen=True, slots=True)
class Judgement:
    threshold: float
    anomalous: bool
    warming_up: bool


class _Rolling:
    """A bounded window of scores with running sums, so each update costs O(1)."""

    def __init__(self, seed: np.ndarray, history: int) -> None:
        self.judged = 0
        self.values: deque[float] = deque(maxlen=history)
        self.total = 0.0
        self.total_sq = 0.0
        for value in seed[-history:]:
            self.push(float(value))

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
        self._seed = _evenly(np.asarray(baseline, dtype=float), settings.history)
        self._series: dict[str, _Rolling] = {}

    def judge(self, series: str, score: float) -> Judgement:
        """Compare a score with the series' current threshold, then learn from it if it was normal."""
        rolling = self._state(series)
        mean, sd = rolling.mean_sd()
        threshold = max(mean + self.settings.k * sd, self.settings.minimum)
        warming_up = rolling.judged < self.settings.warmup
        anomalous = not warming_up and score > threshold
        rolling.judged += 1
        if not anomalous:
            rolling.push(score)
        return Judgement(threshold, anomalous, warming_up)

    def forget(self, series: str) -> None:
        self._series.pop(series, None)

    def _state(self, series: str) -> _Rolling:
        state = self._series.get(series)
        if state is None:
            state = self._series[series] = _Rolling(self._seed, self.settings.history)
        return state


def _evenly(values: np.ndarray, n: int) -> np.ndarray:
    """At most n values spread evenly over the array, keeping its distribution."""
    if len(values) <= n:
        return values
    return values[np.linspace(0, len(values) - 1, n).round().astype(int)]
