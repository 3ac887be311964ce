"""A poll as columns: the usual poll of a long run, taken in without Python per point.

Almost every poll of a daemon that has run for a while holds one point a message, of series one detector
already tracks. `Engine.columns` turns such a poll into arrays once (series, window slots, timestamps,
feature rows); the checkpoint's `admit_columns` and `Engine.start_columns` then work on those arrays,
with per-point work left to C (`map`, numpy). Anything else (a new series, a point without a feature,
an entity detector, several detectors, gap rules) goes the point-by-point way, which is the reference:
both give the same windows, verdicts, alerts and checkpoints (tests/unit/test_columns.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING

import numpy as np

from monitor.records import Point

if TYPE_CHECKING:
    from monitor.engine.detector import Detector, Routed

SERIES, TS, VALUES = attrgetter("series"), attrgetter("ts"), attrgetter("values")


@dataclass(slots=True)
class Columns:
    """The points of a poll (one a message, in message order), all of series `detector` tracks."""

    detector: Detector
    points: list[Point]
    series: list[str]
    slots: np.ndarray
    """Each point's slot in the detector's window store: the series' number while it is tracked."""
    ts: np.ndarray
    values: np.ndarray
    """One row a point, in the detector's feature order."""

    def keep(self, kept: np.ndarray) -> Columns:
        """The points where `kept` is True (the checkpoint's `admit_columns` drops replayed ones)."""
        if kept.all():
            return self
        return Columns(
            self.detector, list(compress(self.points, kept)), list(compress(self.series, kept)),
            self.slots[kept], self.ts[kept], self.values[kept],
        )  # fmt: skip

    def routed(self) -> list[Routed]:
        """The points as the point-by-point path hands them on (to tasks such as retraining)."""
        return list(zip(self.points, repeat(self.detector)))


def feature_rows(points: list[Point], features: tuple[str, ...]) -> np.ndarray | None:
    """The points' values as rows in `features` order; None when one of them lacks a feature."""
    values = map(VALUES, points)
    try:
        if len(features) == 1:
            return np.fromiter(map(itemgetter(features[0]), values), float, len(points)).reshape(-1, 1)
        return np.array(list(map(itemgetter(*features), values)), dtype=float).reshape(len(points), len(features))
    except KeyError:
        return None


def by_series(slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points grouped by series (their slots), each series' points in arrival order: the permutation that
    groups them, where each series' run starts in it, and the run of each grouped point."""
    order = np.argsort(slots, kind="stable")
    grouped = slots[order]
    first = np.ones(len(grouped), dtype=bool)
    first[1:] = grouped[1:] != grouped[:-1]
    return order, np.flatnonzero(first), np.cumsum(first) - 1


def first_and_last(slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of each series (by slot): the index of its first point and of its last, series by first point."""
    if not len(slots):
        return slots, slots
    order, starts, _ = by_series(slots)
    first, last = order[starts], order[np.append(starts[1:], len(order)) - 1]
    by_first = np.argsort(first)
    return first[by_first], last[by_first]
