"""Per-series ring buffers that turn a stream of points into windows to score.

Each series keeps its last `window` points. Once full, a window is emitted on the point that fills it
and then every `stride` points. What happens to points that do not simply follow the newest one is set
by `PointRules`, and every such point is counted by what happened to it:

- late: a point older than the newest of its series by more than `allowed_lateness` (or older than a
  point already in the window) is dropped; within the lateness it is held back and put in time order;
- duplicate: a second point with the same timestamp is dropped (`duplicates: first`) or replaces the
  first (`duplicates: last`);
- gap: with `step` set, up to `fill_gaps` missing points are filled by linear interpolation, and a
  longer gap empties the window (`reset_after_gap`), which would otherwise join two distant stretches.

Windows end on real points only: a window that would end on a filled point is left to the next real one.
A point that lacks one of the detector's features is dropped. When more than `max_series` series are
tracked, the least recently updated one is evicted. `snapshot` and `restore` carry one series' buffer
across a restart or a partition move (see `monitor.service.checkpoint`).

Memory is what bounds a replica with tens of thousands of series, so the buffers and counters of all
series live in arrays indexed by a slot number (no object per series or per point), and due windows are
copied straight into one `WindowBatch` array that goes to the scorer as it is.

At stride 1 a replica windows as many points as it reads, so `collect_many` takes a whole poll at once:
the points that simply follow the newest one of their series are appended to the rings with a few numpy
calls and their due windows gathered in one copy; only the others go through the rules point by point.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.engine.columns import by_series
from monitor.records import Point, Window, WindowBatch

DUPLICATE_POLICIES = ("first", "last")
FREE = 2**63 - 1
"""The update number of a slot that holds no series: never the least recently updated."""
EVICTION_CANDIDATES = 256
"""Least recently updated series found in one pass over the slots, to be evicted one by one."""


@dataclass(frozen=True, slots=True)
class PointRules:
    """How out-of-order, duplicate and missing points are handled; the defaults keep points in arrival order."""

    step: float = 0.0
    """Expected seconds between points of a series; 0 turns gap handling off."""
    fill_gaps: int = 0
    """Gaps of at most this many missing points are filled by linear interpolation."""
    reset_after_gap: bool = False
    """A longer gap empties the window, so no window joins the two sides of an outage."""
    allowed_lateness: float = 0.0
    """Seconds a point may arrive after a newer one of its series and still be used, in time order."""
    duplicates: str = "first"
    """Of two points with the same timestamp, keep the first or the last."""


@dataclass(slots=True)
class _Due:
    """The windows a poll's points made due in bulk, each with the arrival index of the point that did."""

    arrival: list[int]
    slots: np.ndarray
    start: np.ndarray
    end: np.ndarray
    data: np.ndarray

    def add_to(
        self, batch: WindowBatch, series: list[str], labels: list[Mapping[str, str]], rest: WindowBatch, made: list[int]
    ) -> None:
        """Into `batch` in arrival order, merged with the windows that `rest` took point by point (`made`:
        the arrival index of each), as `collect` one point at a time would have added them."""
        order = np.argsort(np.array(self.arrival + made, dtype=np.int64), kind="stable")
        if not len(order):
            return
        series += rest.series
        window_labels = [labels[slot] for slot in self.slots.tolist()] + rest.labels
        start, end = np.concatenate([self.start, rest.start]), np.concatenate([self.end, rest.end])
        data = np.concatenate([self.data, rest.data]) if len(rest) else self.data
        batch.extend(
            [series[i] for i in order.tolist()], [window_labels[i] for i in order.tolist()],
            start[order].tolist(), end[order].tolist(), data[order],
        )  # fmt: skip


class WindowStore:
    """Owns the buffers of one detector's series."""

    def __init__(
        self,
        window: int,
        stride: int,
        features: Sequence[str],
        max_series: int,
        on_evict: Callable[[str], None] | None = None,
        rules: PointRules | None = None,
    ) -> None:
        self.window = window
        self.on_evict = on_evict
        self.stride = stride
        self.features = tuple(features)
        self.max_series = max_series
        self.rules = rules or PointRules()
        self.dropped: Counter[str] = Counter()
        """Points not used, by reason (and `evicted_series`: series evicted)."""
        self.adjusted: Counter[str] = Counter()
        """Points used after a rule changed them: reordered, duplicate_replaced, gap_filled, gap_reset."""
        self.accepted = 0
        """Points taken into a buffer (held back or not); with the drops and replacements, every point."""
        self._slots: dict[str, int] = {}
        """Series → slot."""
        self._updated = array("q")
        """Each slot's last update, numbered in order (`FREE`: no series), for evicting the least recently
        updated series. A number per slot, written for a whole poll in one numpy call, instead of keeping
        the series in that order (an `OrderedDict`): at 100,000 series moving a series to the end of it
        costs 0.3 µs of cache misses a point."""
        self._updates = 0
        self._oldest: list[tuple[int, int]] = []
        """The least recently updated series when they were last looked for, as (slot, its update), newest
        first: the next to evict, unless updated (or let go) since."""
        self._names: list[str] = []
        """Each slot's series: the very string `_slots` holds as its key (`names`)."""
        self._free: list[int] = []
        # Ring buffers written twice (at i and i + window), so every window is one contiguous slice.
        self._data = np.zeros((0, 2 * window, len(self.features)))
        self._ts = np.zeros((0, window))
        # Counters per slot in `array`s: the point-by-point path reads and writes Python numbers (numpy
        # scalars cost a third more per point), the bulk path sees the same memory as numpy arrays (`_view`).
        self._pos = array("q")
        self._filled = array("q")
        self._since = array("q")
        self._last = array("d")
        """Timestamp of the newest point in the ring."""
        self._newest = array("d")
        """Timestamp of the newest point seen, held back or not."""
        self._labels: list[Mapping[str, str]] = []
        self._held: dict[int, list[tuple[float, tuple[float, ...]]]] = {}
        """Points waiting out `allowed_lateness`, in time order, by slot (only slots that hold some)."""

    def __len__(self) -> int:
        return len(self._slots)

    def add(self, point: Point) -> Window | None:
        """Append a point; the newest window it completes. Under the default rules a point completes at
        most one window; `push` returns every one."""
        windows = self.push(point)
        return windows[-1] if windows else None

    def push(self, point: Point) -> list[Window]:
        """Take a point in; returns the windows that became due, oldest first."""
        batch = WindowBatch(self.window, len(self.features))
        self.collect(point, batch)
        return batch.windows()

    def collect(self, point: Point, batch: WindowBatch) -> None:
        """Take a point in and copy the windows it makes due into `batch`."""
        row = self._row(point)
        if row is not None:
            self._take(point.series, self._slot(point), point.ts, row, batch)

    def collect_many(self, points: Sequence[Point], batch: WindowBatch) -> None:
        """Take a poll's points in and copy the windows they make due into `batch` (the engine's path):
        the same windows in the same order, counts and evictions as `collect` one point at a time.

        The points that simply follow the newest one of their series (the usual case) are appended in
        bulk; the others (late, duplicate, held back) go through the rules one by one after them, which
        is the same since series do not share state. Gap rules, held-back lateness and a poll that could
        evict a series (its slot would be reused within the poll) take the point-by-point path."""
        if not self._bulk() or self._could_evict(points):
            for point in points:
                self.collect(point, batch)
            return
        taken, names, slotted, stamps, rows = [], [], [], [], []
        row_of, slot_of = self._row, self._slot  # once per point: bound here, not looked up each time
        for i, point in enumerate(points):
            row = row_of(point)
            if row is not None:
                taken.append(i)
                names.append(point.series)
                slotted.append(slot_of(point))  # every point numbers its series' update
                stamps.append(point.ts)
                rows.append(row)
        if taken:
            values = np.array(rows, dtype=float).reshape(len(rows), len(self.features))
            self._collect(names, np.array(taken), np.array(slotted), np.array(stamps, dtype=float), values, batch)

    def slots_of(self, series: list[str]) -> np.ndarray | None:
        """The slots of a poll's series, for `collect_columns`; None when one of them is not tracked (its
        point makes a slot, and may evict) or the rules take points one by one."""
        if not self._bulk():
            return None
        try:
            return np.fromiter(map(self._slots.get, series), np.int64, len(series))
        except TypeError:  # None: a series not tracked
            return None

    def names(self, slots: np.ndarray) -> list[str]:
        """The series of tracked slots as the string objects this store keys them by. A decoded point's
        name is a new string each poll; at 100,000 series a dict lookup with it costs 3 to 4 times one
        with the key itself (the key's characters are compared, a cache miss more), and a windowed point
        is looked up in several such dicts (checkpoint, normalisation, thresholds, alerts)."""
        return list(map(self._names.__getitem__, slots.tolist()))

    def collect_columns(
        self, series: list[str], slots: np.ndarray, ts: np.ndarray, values: np.ndarray, batch: WindowBatch
    ) -> None:
        """`collect_many` for a poll already in columns (one row of `values` a point, in feature order) of
        tracked series (`slots_of`): no Python per point; each point numbers its series' update."""
        updates = np.arange(self._updates, self._updates + len(slots))
        np.maximum.at(_view(self._updated), slots, updates)  # a series' last point in the poll wins
        self._updates += len(slots)
        self._collect(series, np.arange(len(series)), slots, ts, values, batch)

    def _bulk(self) -> bool:
        """Whether the rules let a poll's in-order points be appended in bulk (no gap rules, no holding back)."""
        return self.rules.step <= 0 and self.rules.allowed_lateness <= 0

    def _collect(
        self,
        series: list[str],
        arrival: np.ndarray,
        slots: np.ndarray,
        ts: np.ndarray,
        values: np.ndarray,
        batch: WindowBatch,
    ) -> None:
        """Points of tracked series (`series[j]` in slot `slots[j]`, arrived `arrival[j]`-th) into the rings:
        those that follow their series' newest one in bulk, the rest one by one after them."""
        bulk = self._in_order(slots, ts)
        made_by, *windows = self._append_many(np.flatnonzero(bulk), slots[bulk], ts[bulk], values[bulk])
        rest, made = WindowBatch(self.window, len(self.features)), []
        for j in np.flatnonzero(~bulk).tolist():
            before = len(rest)
            self._take(series[j], int(slots[j]), float(ts[j]), values[j], rest)
            made.extend([int(arrival[j])] * (len(rest) - before))
        due = _Due(arrival[made_by].tolist(), *windows)
        due.add_to(batch, [series[j] for j in made_by.tolist()], self._labels, rest, made)

    def _row(self, point: Point) -> tuple[float, ...] | None:
        """The point's values in the order of `features`; None (counted) when it lacks one."""
        try:
            return tuple(map(point.values.__getitem__, self.features))
        except KeyError:
            self.dropped["missing_feature"] += 1
            return None

    def _take(self, series: str, slot: int, ts: float, row: Sequence[float] | np.ndarray, batch: WindowBatch) -> None:
        """One point of a series through the rules: in order, held back, dropped or replacing another."""
        if ts > self._newest[slot] and slot not in self._held and self.rules.allowed_lateness == 0:
            self.accepted += 1  # the usual case: the next point of its series, in order
            self._newest[slot] = ts
            self._append_real(series, slot, ts, row, batch)
            return
        if not self._admit(slot, ts, row):
            return
        self.accepted += 1
        held = self._held[slot]
        release = bisect.bisect_right(held, self._newest[slot] - self.rules.allowed_lateness, key=lambda h: h[0])
        for ts, values in held[:release]:
            self._append_real(series, slot, ts, values, batch)
        del held[:release]
        if not held:
            del self._held[slot]

    def _could_evict(self, points: Sequence[Point]) -> bool:
        """Whether taking the poll's points may evict a series, whose slot a later point could reuse."""
        slots = self._slots
        if len(slots) + len(points) <= self.max_series:
            return False  # not even if every point were of a new series
        return len(slots) + len({p.series for p in points if p.series not in slots}) > self.max_series

    def _in_order(self, slots: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Which points simply follow the newest one of their series: each newer than the one before
        it (in this poll, or the newest seen), of a series with nothing held back, and all earlier points
        of the series in this poll too (the rest go one by one, in order, after them)."""
        order, starts, group = by_series(slots)
        s, t = slots[order], ts[order]
        previous = np.roll(t, 1)
        previous[starts] = _view(self._newest)[s[starts]]
        wrong = ~(t > previous)
        if self._held:
            wrong |= np.isin(s, list(self._held))
        seen = np.cumsum(wrong)
        in_order = np.empty(len(s), dtype=bool)
        in_order[order] = seen - (seen[starts] - wrong[starts])[group] == 0
        return in_order

    def _append_many(
        self, arrival: np.ndarray, slots: np.ndarray, ts: np.ndarray, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Append points that follow their series' newest one, as `_append_real` does one by one; returns
        the windows that became due (`arrival` of the point that made each, slot, start, end, data), in no
        particular order."""
        order, starts, group = by_series(slots)
        arrival, s, t, v = arrival[order], slots[order], ts[order], values[order]
        count = np.diff(np.append(starts, len(s)))
        k = np.arange(len(s)) - starts[group]  # rank of each point among its series' points in the poll
        slot = s[starts]
        counters = [_view(a) for a in (self._pos, self._filled, self._since, self._last, self._newest)]
        pos, filled, since = (c[slot] for c in counters[:3])
        w = self.window
        # The first due window: the ring full and `stride` points since the last one; then every `stride`.
        first_due = np.maximum(np.maximum(w - filled - 1, 0), self.stride - since - 1)
        due = (k >= first_due[group]) & ((k - first_due[group]) % self.stride == 0)
        start, data = self._gather(slot, pos, starts, group, k, t, v, due)
        ring = k >= count[group] - w  # older points of a long run are overwritten within the poll anyway
        at = (pos[group] + k)[ring] % w
        self._data[s[ring], at] = self._data[s[ring], at + w] = v[ring]
        self._ts[s[ring], at] = t[ring]
        counters[0][slot] = (pos + count) % w
        counters[1][slot] = np.minimum(filled + count, w)
        counters[2][slot] = np.where(first_due < count, (count - 1 - first_due) % self.stride, since + count)
        counters[3][slot] = counters[4][slot] = t[starts + count - 1]
        self.accepted += len(s)
        return arrival[due], s[due], start, t[due], data

    def _gather(
        self,
        slot: np.ndarray,
        pos: np.ndarray,
        starts: np.ndarray,
        group: np.ndarray,
        k: np.ndarray,
        t: np.ndarray,
        v: np.ndarray,
        due: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Start times and data of the due windows, in one copy: each series' ring in time order followed
        by its new points, laid end to end, so the window of its k-th new point is rows k+1 .. k+window."""
        w, f = self.window, len(self.features)
        if not due.any():
            return np.zeros(0), np.zeros((0, w, f))
        base = starts + w * np.arange(len(slot))
        rows = np.empty((len(t) + w * len(slot), f))
        rows[(base[:, None] + np.arange(w)).ravel()] = _windows(self._data, w)[slot, pos].reshape(-1, f)
        rows[base[group] + w + k] = v
        g, first = group[due], k[due] + 1  # the first point of a window: in the ring, or new in this poll
        in_ring = first < w
        start = np.where(in_ring, self._ts[slot[g], (pos[g] + first) % w], t[starts[g] + np.maximum(first - w, 0)])
        return start, _windows(rows, w)[base[g] + first]

    def snapshot(self, series: str) -> dict[str, Any] | None:
        """The series' buffer in time order (None if untracked), for `restore` after a restart."""
        slot = self._slots.get(series)
        if slot is None:
            return None
        filled, pos = self._filled[slot], self._pos[slot]
        rows = slice(pos + self.window - filled, pos + self.window)
        ts = np.concatenate([self._ts[slot], self._ts[slot]])[rows]
        return {
            "data": self._data[slot, rows].copy(),
            "ts": ts,
            "labels": dict(self._labels[slot]),
            "since_emit": int(self._since[slot]),
            "newest": float(self._newest[slot]),
            "held": [(ts, list(values)) for ts, values in self._held.get(slot, [])],
        }

    def restore(self, series: str, state: Mapping[str, Any]) -> None:
        """Rebuild a series' buffer from `snapshot`; ValueError if it does not fit this store's shape."""
        data, ts = np.asarray(state["data"], dtype=float), np.asarray(state["ts"], dtype=float)
        if data.ndim != 2 or data.shape[1] != len(self.features) or len(ts) != len(data) or len(ts) > self.window:
            raise ValueError(f"buffer of shape {data.shape} does not fit window {self.window} x {self.features}")
        self.forget(series)
        slot = self._slot(Point(series, 0.0, {}, state["labels"]))
        if len(ts):
            self._fill_new(slot, ts, data)
        self._since[slot] = int(state["since_emit"])
        self._newest[slot] = max(float(state["newest"]), self._last[slot])
        held = [(float(t), tuple(float(v) for v in values)) for t, values in state["held"]]
        if held:
            self._held[slot] = held

    def forget(self, series: str) -> None:
        """Drop a series' buffer without counting an eviction (its partition moved to another replica)."""
        slot = self._slots.pop(series, None)
        if slot is not None:
            self._release(slot)

    def _admit(self, slot: int, ts: float, row: Sequence[float] | np.ndarray) -> bool:
        """Place a point among the held ones, or count why not; True when it was taken."""
        newest = self._newest[slot]
        if ts < newest - self.rules.allowed_lateness or ts < self._last[slot]:
            self.dropped["late"] += 1
            return False
        if ts == self._last[slot]:
            return self._duplicate(slot, None, row)
        held = self._held.setdefault(slot, [])
        i = bisect.bisect_left(held, ts, key=lambda h: h[0])
        if i < len(held) and held[i][0] == ts:
            return self._duplicate(slot, i, row)
        if ts < newest:
            self.adjusted["reordered"] += 1
        held.insert(i, (ts, row))
        self._newest[slot] = max(newest, ts)
        return True

    def _duplicate(self, slot: int, held: int | None, row: Sequence[float] | np.ndarray) -> bool:
        """A second point with a known timestamp: dropped, or it replaces the first (never a new point)."""
        if self.rules.duplicates == "first":
            self.dropped["duplicate"] += 1
            return False
        self.adjusted["duplicate_replaced"] += 1
        if held is not None:
            self._held[slot][held] = (self._held[slot][held][0], row)
        else:
            last = (self._pos[slot] - 1) % self.window
            self._data[slot, last] = self._data[slot, last + self.window] = row
        return False

    def _slot(self, point: Point) -> int:
        slot = self._slots.get(point.series)
        if slot is None:
            slot = self._new_slot(point)
        self._updated[slot], self._updates = self._updates, self._updates + 1
        return slot

    def _new_slot(self, point: Point) -> int:
        """A slot for a series not tracked yet, evicting the least recently updated one when full."""
        if len(self._slots) >= self.max_series:
            old = self._least_recent()
            evicted = self._names[old]
            del self._slots[evicted]
            self._release(old)
            self.dropped["evicted_series"] += 1
            if self.on_evict is not None:
                self.on_evict(evicted)
        slot = self._allocate()
        self._slots[point.series] = slot
        self._names[slot] = point.series
        self._labels[slot] = dict(point.labels)
        self._pos[slot], self._last[slot], self._newest[slot] = 0, float("-inf"), float("-inf")
        self._restart(slot)
        return slot

    def _least_recent(self) -> int:
        """The slot of the least recently updated series. `EVICTION_CANDIDATES` of the oldest are found in
        one pass; one not updated since is still older than every other series (updates only number
        upwards), so it is the answer until none is left."""
        while True:
            while self._oldest:
                slot, update = self._oldest.pop()
                if self._updated[slot] == update:
                    return slot
            updated, k = _view(self._updated), min(EVICTION_CANDIDATES, len(self._slots))
            found = np.argpartition(updated, k - 1)[:k]  # all of tracked series: a free slot's is FREE
            found = found[np.argsort(updated[found])[::-1]]
            self._oldest = list(zip(found.tolist(), updated[found].tolist(), strict=True))

    def _allocate(self) -> int:
        if not self._free:
            size = len(self._pos)
            grown = min(max(16, 2 * size), max(self.max_series, 1))
            self._data = np.concatenate([self._data, np.zeros((grown - size, *self._data.shape[1:]))])
            self._ts = np.concatenate([self._ts, np.zeros((grown - size, self.window))])
            for counter in (self._pos, self._filled, self._since):
                counter.extend([0] * (grown - size))
            self._updated.extend([FREE] * (grown - size))
            for stamps in (self._last, self._newest):
                stamps.extend([-math.inf] * (grown - size))
            self._labels.extend([{}] * (grown - size))
            self._names.extend([""] * (grown - size))
            self._free.extend(range(grown - 1, size - 1, -1))
        return self._free.pop()

    def _release(self, slot: int) -> None:
        self._held.pop(slot, None)
        self._labels[slot] = {}
        self._names[slot] = ""
        self._updated[slot] = FREE
        self._free.append(slot)

    def _restart(self, slot: int) -> None:
        # Counting from stride - window makes the first full window due at once, later ones every stride.
        self._filled[slot] = 0
        self._since[slot] = self.stride - self.window

    def _append_real(self, series: str, slot: int, ts: float, row: Sequence[float], batch: WindowBatch) -> None:
        """Append a point that arrived (after any gap rule); add the window it completes to `batch`."""
        step = self.rules.step
        if step > 0 and self._filled[slot]:
            missing = round((ts - self._last[slot]) / step) - 1
            if 0 < missing <= self.rules.fill_gaps:
                self._fill(slot, ts, row, missing)
            elif missing > 0 and self.rules.reset_after_gap:
                self.adjusted["gap_reset"] += 1
                self._restart(slot)
        self._append(slot, ts, row)
        if self._filled[slot] < self.window or self._since[slot] < self.stride:
            return
        self._since[slot] = 0
        pos = self._pos[slot]
        batch.add(series, self._labels[slot], float(self._ts[slot, pos]), ts, self._data[slot, pos : pos + self.window])

    def _fill(self, slot: int, ts: float, row: Sequence[float], missing: int) -> None:
        """Linear interpolation between the newest point in the ring and the arriving one."""
        t0, before = self._last[slot], self._data[slot, (self._pos[slot] - 1) % self.window].copy()
        after = np.asarray(row, dtype=float)
        for k in range(1, missing + 1):
            share = k / (missing + 1)
            self._append(slot, t0 + (ts - t0) * share, before + (after - before) * share)
        self.adjusted["gap_filled"] += missing

    def _fill_new(self, slot: int, ts: np.ndarray, data: np.ndarray) -> None:
        """A new slot's first 1 to `window` rows at once, as `_append` one by one would leave them but for
        where the ring starts (it starts at 0: nothing is in it yet) and `_since`, which the caller sets.
        A restore fills 100,000 series so."""
        n, window = len(ts), self.window
        ring = self._data[slot]
        ring[:n] = ring[window : window + n] = data
        self._ts[slot, :n] = ts
        self._pos[slot], self._filled[slot], self._last[slot] = n % window, n, float(ts[-1])

    def _append(self, slot: int, ts: float, row: Sequence[float] | np.ndarray) -> None:
        pos = self._pos[slot]
        ring = self._data[slot]
        ring[pos] = ring[pos + self.window] = row
        self._ts[slot, pos] = ts
        self._pos[slot] = (pos + 1) % self.window
        self._filled[slot] = min(self._filled[slot] + 1, self.window)
        self._since[slot] += 1
        self._last[slot] = ts


def _windows(rows: np.ndarray, window: int) -> np.ndarray:
    """Every run of `window` consecutive rows along the second-to-last axis, as a view (no copy):
    indexing it copies whole windows at once, not element by element."""
    return np.lib.stride_tricks.sliding_window_view(rows, window, axis=-2).swapaxes(-1, -2)


def _view(counters: array) -> np.ndarray:
    """Per-slot counters as a numpy array over the same memory: writes to it change them."""
    return np.frombuffer(counters, dtype=np.float64 if counters.typecode == "d" else np.int64)
