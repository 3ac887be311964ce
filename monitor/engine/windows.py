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

Memory is what bounds a replica with tens of thousands of series, so the buffers of all series live in
two arrays indexed by a slot number (no object per series or per point), and due windows are copied
straight into one `WindowBatch` array that goes to the scorer as it is.
"""

from __future__ import annotations

import bisect
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.records import Point, Window, WindowBatch

DUPLICATE_POLICIES = ("first", "last")


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
        self._slots: OrderedDict[str, int] = OrderedDict()
        """Series → slot, least recently updated first."""
        self._free: list[int] = []
        # Ring buffers written twice (at i and i + window), so every window is one contiguous slice.
        self._data = np.zeros((0, 2 * window, len(self.features)))
        self._ts = np.zeros((0, window))
        self._pos: list[int] = []
        self._filled: list[int] = []
        self._since: list[int] = []
        self._last: list[float] = []
        """Timestamp of the newest point in the ring."""
        self._newest: list[float] = []
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
        """Take a point in and copy the windows it makes due into `batch` (the engine's path)."""
        try:
            row = tuple([point.values[name] for name in self.features])
        except KeyError:
            self.dropped["missing_feature"] += 1
            return
        slot = self._slot(point)
        ts = point.ts
        if ts > self._newest[slot] and slot not in self._held and self.rules.allowed_lateness == 0:
            self.accepted += 1  # the usual case: the next point of its series, in order
            self._newest[slot] = ts
            self._append_real(point.series, slot, ts, row, batch)
            return
        if not self._admit(slot, ts, row):
            return
        self.accepted += 1
        held = self._held[slot]
        release = bisect.bisect_right(held, self._newest[slot] - self.rules.allowed_lateness, key=lambda h: h[0])
        for ts, values in held[:release]:
            self._append_real(point.series, slot, ts, values, batch)
        del held[:release]
        if not held:
            del self._held[slot]

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
            "since_emit": self._since[slot],
            "newest": self._newest[slot],
            "held": [(ts, list(values)) for ts, values in self._held.get(slot, [])],
        }

    def restore(self, series: str, state: Mapping[str, Any]) -> None:
        """Rebuild a series' buffer from `snapshot`; ValueError if it does not fit this store's shape."""
        data, ts = np.asarray(state["data"], dtype=float), np.asarray(state["ts"], dtype=float)
        if data.ndim != 2 or data.shape[1] != len(self.features) or len(ts) != len(data) or len(ts) > self.window:
            raise ValueError(f"buffer of shape {data.shape} does not fit window {self.window} x {self.features}")
        self.forget(series)
        slot = self._slot(Point(series, 0.0, {}, state["labels"]))
        for t, row in zip(ts, data, strict=True):
            self._append(slot, float(t), row)
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

    def _admit(self, slot: int, ts: float, row: tuple[float, ...]) -> bool:
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

    def _duplicate(self, slot: int, held: int | None, row: tuple[float, ...]) -> bool:
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
        if slot is not None:
            self._slots.move_to_end(point.series)
            return slot
        if len(self._slots) >= self.max_series:
            evicted, old = self._slots.popitem(last=False)
            self._release(old)
            self.dropped["evicted_series"] += 1
            if self.on_evict is not None:
                self.on_evict(evicted)
        slot = self._allocate()
        self._slots[point.series] = slot
        self._labels[slot] = dict(point.labels)
        self._pos[slot], self._last[slot], self._newest[slot] = 0, float("-inf"), float("-inf")
        self._restart(slot)
        return slot

    def _allocate(self) -> int:
        if not self._free:
            size = len(self._pos)
            grown = min(max(16, 2 * size), max(self.max_series, 1))
            self._data = np.concatenate([self._data, np.zeros((grown - size, *self._data.shape[1:]))])
            self._ts = np.concatenate([self._ts, np.zeros((grown - size, self.window))])
            for values, fill in ((self._pos, 0), (self._filled, 0), (self._since, 0), (self._labels, {})):
                values.extend([fill] * (grown - size))  # type: ignore[list-item]
            self._last.extend([float("-inf")] * (grown - size))
            self._newest.extend([float("-inf")] * (grown - size))
            self._free.extend(range(grown - 1, size - 1, -1))
        return self._free.pop()

    def _release(self, slot: int) -> None:
        self._held.pop(slot, None)
        self._labels[slot] = {}
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

    def _append(self, slot: int, ts: float, row: Sequence[float] | np.ndarray) -> None:
        pos = self._pos[slot]
        ring = self._data[slot]
        ring[pos] = ring[pos + self.window] = row
        self._ts[slot, pos] = ts
        self._pos[slot] = (pos + 1) % self.window
        self._filled[slot] = min(self._filled[slot] + 1, self.window)
        self._since[slot] += 1
        self._last[slot] = ts
