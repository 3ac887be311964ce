"""Scoring of labelled rows, as SKAB (the Skoltech Anomaly Benchmark) scores outlier detection, plus an
event view of the same alerts; pure functions over numpy arrays.

Outliers: every test row of every file is one binary decision (predicted: an alert of the file's entity
is open on that row), pooled over all files. SKAB's definitions: F1 = TP / (TP + (FP + FN) / 2),
FAR = FP / (FP + TN), MAR = FN / (FN + TP). `tests/unit/test_outliers.py` reproduces the pooled counts
SKAB published for its baselines exactly.

Events: a labelled period (a run of labelled rows) is found when an alert starts inside it; its delay is
the data time from the period's first row to that alert. An alert that starts outside every period is a
false page, whatever the rows around it say: this is what the person on call sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Counts:
    """The confusion counts of row decisions."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def f1(self) -> float:
        return _ratio(self.tp, self.tp + (self.fp + self.fn) / 2)

    @property
    def far(self) -> float:
        """False alarm rate: the share of normal rows predicted anomalous."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def mar(self) -> float:
        """Missing alarm rate: the share of anomalous rows not predicted."""
        return _ratio(self.fn, self.fn + self.tp)


@dataclass(slots=True)
class Events:
    """Labelled periods, those an alert started inside, their delays (seconds), and alerts outside all."""

    periods: int = 0
    found: int = 0
    delays: list[float] = field(default_factory=list)
    outside: int = 0

    def add(self, other: Events) -> None:
        self.periods += other.periods
        self.found += other.found
        self.delays += other.delays
        self.outside += other.outside

    @property
    def median_delay(self) -> float:
        return float(np.median(self.delays)) if self.delays else math.nan


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def counts(labels: np.ndarray, predicted: np.ndarray) -> Counts:
    """Confusion counts of 0/1 (or boolean) labels against predictions of the same rows."""
    labels, predicted = np.asarray(labels, bool), np.asarray(predicted, bool)
    if labels.shape != predicted.shape:
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labelled rows")
    return Counts(
        tp=int((labels & predicted).sum()),
        fp=int((~labels & predicted).sum()),
        fn=int((labels & ~predicted).sum()),
        tn=int((~labels & ~predicted).sum()),
    )


def runs(flags: np.ndarray, first: int = 0) -> list[tuple[int, int]]:
    """Runs of consecutive true rows from row `first` on, as inclusive (start, end) pairs."""
    padded = np.concatenate(([False], np.asarray(flags, bool)[first:], [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(first + int(a), first + int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def events(labels: np.ndarray, alerts: np.ndarray, ts: np.ndarray) -> Events:
    """The event view of one file's scored rows: `alerts` is true on the rows where an alert fired."""
    periods = runs(labels)
    starts = np.flatnonzero(np.asarray(alerts, bool))
    result = Events(periods=len(periods))
    inside = np.zeros(len(starts), dtype=bool)
    for first, last in periods:
        hits = (starts >= first) & (starts <= last)
        inside |= hits
        if hits.any():
            result.found += 1
            result.delays.append(float(ts[starts[hits][0]] - ts[first]))
    result.outside = int((~inside).sum())
    return result
