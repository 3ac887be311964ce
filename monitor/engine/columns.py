"""A poll as columns: the usual poll of a long run, taken in without Python per point.

Almost every poll of a daemon that has run for a while holds one point a message, of series the detectors
already track (or that no detector wants). `Engine.columns` turns such a poll into arrays once (series,
timestamps, and per detector window slots and feature rows); the checkpoint's `admit_columns` and
`Engine.window_columns` then work on those arrays, with per-point work left to C (`map`, numpy). Anything
else (a new series, a point without a feature, an entity detector, gap rules) goes the point-by-point
way, which is the reference: both give the same windows, verdicts, alerts and checkpoints
(tests/unit/test_columns.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING

import numpy as np

from monitor.records import Point, PointColumns

if TYPE_CHECKING:
    from monitor.engine.detector import Detector, Routed

SERIES, TS, VALUES = attrgetter("series"), attrgetter("ts"), attrgetter("values")


class PointList:
    """Decoded `Point`s, one a message, with the interface of `PointColumns`: a poll that was decoded
    message by message (another format, or a poll with a message of another shape) in columns."""

    def __init__(self, points: list[Point]) -> None:
        self._points = points
        self.series: list[str] = list(map(SERIES, points))
        self.ts = np.fromiter(map(TS, points), float, len(points))

    def __len__(self) -> int:
        return len(self._points)

    def points(self) -> list[Point]:
        return self._points

    def rows(self, at: np.ndarray, features: tuple[str, ...]) -> np.ndarray | None:
        """The values of the points at `at` as rows in `features` order; None when one of them lacks one."""
        chosen = self._points if len(at) == len(self._points) else list(map(self._points.__getitem__, at.tolist()))
        return feature_rows(chosen, features)

    def keep(self, kept: np.ndarray) -> PointList:
        return PointList(list(compress(self._points, kept)))


PollPoints = PointColumns | PointList
"""A poll's points, one a message, as the columnar path takes them in."""


@dataclass(slots=True)
class Part:
    """One detector's points of a poll in columns."""

    detector: Detector
    at: np.ndarray
    """Where the points are in the poll."""
    slots: np.ndarray
    """Each point's slot in the detector's window store: the series' number while it is tracked."""
    values: np.ndarray
    """One row a point, in the detector's feature order."""


@dataclass(slots=True)
class Columns:
    """The points of a poll (one a message, in message order), each of a series its detector tracks (or
    of one no detector wants)."""

    points: PollPoints
    series: list[str]
    """The poll's series names as the window stores key them (`tracked_names`)."""
    owners: list[Detector | None]
    """Each point's detector (None: no detector wants its series)."""
    parts: list[Part]

    @property
    def ts(self) -> np.ndarray:
        return self.points.ts

    def keep(self, kept: np.ndarray) -> Columns:
        """The points where `kept` is True (the checkpoint's `admit_columns` drops replayed ones)."""
        if kept.all():
            return self
        moved = np.cumsum(kept) - 1  # where each kept point lands
        parts = [Part(p.detector, moved[p.at[k]], p.slots[k], p.values[k]) for p in self.parts for k in [kept[p.at]]]
        return Columns(
            self.points.keep(kept), list(compress(self.series, kept)), list(compress(self.owners, kept)), parts,
        )  # fmt: skip

    @property
    def unmatched(self) -> int:
        """Points no detector wants."""
        return len(self.points) - sum(len(part.at) for part in self.parts)

    def owned(self) -> np.ndarray | None:
        """Where the points that have a detector are, in poll order (None: all of them)."""
        if not self.unmatched:
            return None
        return np.sort(np.concatenate([part.at for part in self.parts])) if self.parts else np.empty(0, np.int64)

    def of(self, part: Part) -> tuple[list[str], np.ndarray]:
        """A part's series names and timestamps, point by point (the poll's own when the part is all of it)."""
        if len(part.at) == len(self.series):
            return self.series, self.ts
        return list(map(self.series.__getitem__, part.at.tolist())), self.ts[part.at]

    def keys(self) -> np.ndarray:
        """Each point's series as a number no other series of the poll has: its slot, told apart by its
        detector's part (-1 for a point no detector wants)."""
        if len(self.parts) == 1 and len(self.parts[0].at) == len(self.points):
            return self.parts[0].slots
        keys = np.full(len(self.points), -1, dtype=np.int64)
        for i, part in enumerate(self.parts):
            keys[part.at] = part.slots * len(self.parts) + i
        return keys

    def routed(self) -> list[Routed]:
        """The points as the point-by-point path hands them on (to tasks such as retraining)."""
        return list(zip(self.points.points(), self.owners, strict=True))


def parts_of(points: PollPoints, owners: list[Detector | None], distinct: list[Detector | None]) -> list[Part] | None:
    """Each detector's points as a `Part` (its series' slots, its feature rows; `distinct`: the owners
    once each); None when a series is not in its detector's windows (`WindowStore.slots_of`) or a point
    lacks one of its features."""
    if len(distinct) == 1 and distinct[0] is not None:
        found = [(distinct[0], np.arange(len(points)), points.series)]
    else:
        number = {d: i for i, d in enumerate(distinct)}
        which = np.fromiter(map(number.__getitem__, owners), np.int64, len(owners))
        found = []
        for i, detector in enumerate(distinct):
            at = np.flatnonzero(which == i)
            if detector is not None:
                found.append((detector, at, list(map(points.series.__getitem__, at.tolist()))))
    parts = []
    for detector, at, its_series in found:
        slots = detector.windows.slots_of(its_series)
        values = None if slots is None else points.rows(at, detector.settings.features)
        if slots is None or values is None:
            return None
        parts.append(Part(detector, at, slots, values))
    return parts


def tracked_names(series: list[str], parts: list[Part]) -> list[str]:
    """The poll's series names as the strings their window stores key them by (`WindowStore.names`), so
    that the dicts of series they are looked up in next match them on identity; a point no detector
    wants keeps its own."""
    if len(parts) == 1 and len(parts[0].at) == len(series):
        return parts[0].detector.windows.names(parts[0].slots)
    named = series.copy()
    for part in parts:
        for i, name in zip(part.at.tolist(), part.detector.windows.names(part.slots), strict=True):
            named[i] = name
    return named


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


def first_and_last(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of each series (by slot or key): the index of its first point and of its last, series by first point."""
    if not len(keys):
        return keys, keys
    order, starts, _ = by_series(keys)
    first, last = order[starts], order[np.append(starts[1:], len(order)) - 1]
    by_first = np.argsort(first)
    return first[by_first], last[by_first]
