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
across a restart or a partition move (see `monitor.checkpoint`).
"""

from __future__ import annotations

import bisect
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.records import Point, Window

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


@dataclass(slots=True)
class _Buffer:
    """A ring buffer written twice (at i and i + window) so the window is always one contiguous slice."""

    data: np.ndarray  # (2 * window, n_features)
    ts: np.ndarray  # (2 * window,)
    labels: Mapping[str, str]
    pos: int = 0
    filled: int = 0
    since_emit: int = 0
    last_ts: float = float("-inf")
    """Timestamp of the newest point in the ring."""
    newest: float = float("-inf")
    """Timestamp of the newest point seen, held back or not."""
    held: list[tuple[float, list[float]]] = field(default_factory=list)
    """Points waiting out `allowed_lateness`, in time order."""


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
        self._buffers: OrderedDict[str, _Buffer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buffers)

    def add(self, point: Point) -> Window | None:
        """Append a point; the newest window it completes. Under the default rules a point completes at
        most one window; `push` returns every one."""
        windows = self.push(point)
        return windows[-1] if windows else None

    def push(self, point: Point) -> list[Window]:
        """Take a point in; returns the windows that became due, oldest first."""
        row = self._row(point)
        if row is None:
            self.dropped["missing_feature"] += 1
            return []
        buf = self._buffer(point)
        if not self._admit(buf, point.ts, row):
            return []
        self.accepted += 1
        windows = []
        release = bisect.bisect_right(buf.held, buf.newest - self.rules.allowed_lateness, key=lambda h: h[0])
        for ts, values in buf.held[:release]:
            window = self._append_real(point.series, buf, ts, values)
            if window is not None:
                windows.append(window)
        del buf.held[:release]
        return windows

    def snapshot(self, series: str) -> dict[str, Any] | None:
        """The series' buffer in time order (None if untracked), for `restore` after a restart."""
        buf = self._buffers.get(series)
        if buf is None:
            return None
        rows = slice(buf.pos + self.window - buf.filled, buf.pos + self.window)
        return {
            "data": buf.data[rows].copy(),
            "ts": buf.ts[rows].copy(),
            "labels": dict(buf.labels),
            "since_emit": buf.since_emit,
            "newest": buf.newest,
            "held": [(ts, list(values)) for ts, values in buf.held],
        }

    def restore(self, series: str, state: Mapping[str, Any]) -> None:
        """Rebuild a series' buffer from `snapshot`; ValueError if it does not fit this store's shape."""
        data, ts = np.asarray(state["data"], dtype=float), np.asarray(state["ts"], dtype=float)
        if data.ndim != 2 or data.shape[1] != len(self.features) or len(ts) != len(data) or len(ts) > self.window:
            raise ValueError(f"buffer of shape {data.shape} does not fit window {self.window} x {self.features}")
        self.forget(series)
        buf = self._buffer(Point(series, 0.0, {}, state["labels"]))
        for t, row in zip(ts, data, strict=True):
            self._append(buf, float(t), row)
        buf.since_emit = int(state["since_emit"])
        buf.newest = max(float(state["newest"]), buf.last_ts)
        buf.held = [(float(t), [float(v) for v in values]) for t, values in state["held"]]

    def forget(self, series: str) -> None:
        """Drop a series' buffer without counting an eviction (its partition moved to another replica)."""
        self._buffers.pop(series, None)

    def _admit(self, buf: _Buffer, ts: float, row: list[float]) -> bool:
        """Place a point among the held ones, or count why not; True when it was taken."""
        if ts < buf.newest - self.rules.allowed_lateness or ts < buf.last_ts:
            self.dropped["late"] += 1
            return False
        if ts == buf.last_ts:
            return self._duplicate(buf, None, row)
        i = bisect.bisect_left(buf.held, ts, key=lambda h: h[0])
        if i < len(buf.held) and buf.held[i][0] == ts:
            return self._duplicate(buf, i, row)
        if ts < buf.newest:
            self.adjusted["reordered"] += 1
        buf.held.insert(i, (ts, row))
        buf.newest = max(buf.newest, ts)
        return True

    def _duplicate(self, buf: _Buffer, held: int | None, row: list[float]) -> bool:
        """A second point with a known timestamp: dropped, or it replaces the first (never a new point)."""
        if self.rules.duplicates == "first":
            self.dropped["duplicate"] += 1
            return False
        self.adjusted["duplicate_replaced"] += 1
        if held is not None:
            buf.held[held] = (buf.held[held][0], row)
        else:
            last = (buf.pos - 1) % self.window
            buf.data[last] = buf.data[last + self.window] = row
        return False

    def _row(self, point: Point) -> list[float] | None:
        try:
            return [point.values[name] for name in self.features]
        except KeyError:
            return None

    def _buffer(self, point: Point) -> _Buffer:
        buf = self._buffers.get(point.series)
        if buf is not None:
            self._buffers.move_to_end(point.series)
            return buf
        if len(self._buffers) >= self.max_series:
            evicted, _ = self._buffers.popitem(last=False)
            self.dropped["evicted_series"] += 1
            if self.on_evict is not None:
                self.on_evict(evicted)
        n = len(self.features)
        buf = _Buffer(np.zeros((2 * self.window, n)), np.zeros(2 * self.window), dict(point.labels))
        self._restart(buf)
        self._buffers[point.series] = buf
        return buf

    def _restart(self, buf: _Buffer) -> None:
        # Counting from stride - window makes the first full window due at once, later ones every stride.
        buf.filled = 0
        buf.since_emit = self.stride - self.window

    def _append_real(self, series: str, buf: _Buffer, ts: float, row: list[float]) -> Window | None:
        """Append a point that arrived (after any gap rule), and return the window it completes."""
        step = self.rules.step
        if step > 0 and buf.filled:
            missing = round((ts - buf.last_ts) / step) - 1
            if 0 < missing <= self.rules.fill_gaps:
                self._fill(buf, ts, row, missing)
            elif missing > 0 and self.rules.reset_after_gap:
                self.adjusted["gap_reset"] += 1
                self._restart(buf)
        self._append(buf, ts, row)
        if buf.filled < self.window or buf.since_emit < self.stride:
            return None
        buf.since_emit = 0
        return self._window(series, buf)

    def _fill(self, buf: _Buffer, ts: float, row: list[float], missing: int) -> None:
        """Linear interpolation between the newest point in the ring and the arriving one."""
        t0, before = buf.last_ts, buf.data[(buf.pos - 1) % self.window].copy()
        after = np.asarray(row, dtype=float)
        for k in range(1, missing + 1):
            share = k / (missing + 1)
            self._append(buf, t0 + (ts - t0) * share, before + (after - before) * share)
        self.adjusted["gap_filled"] += missing

    def _append(self, buf: _Buffer, ts: float, row: Sequence[float] | np.ndarray) -> None:
        for i in (buf.pos, buf.pos + self.window):
            buf.data[i] = row
            buf.ts[i] = ts
        buf.pos = (buf.pos + 1) % self.window
        buf.filled = min(buf.filled + 1, self.window)
        buf.since_emit += 1
        buf.last_ts = ts

    def _window(self, series: str, buf: _Buffer) -> Window:
        end = buf.pos + self.window
        return Window(
            series=series,
            start_ts=float(buf.ts[buf.pos]),
            end_ts=float(buf.ts[end - 1]),
            data=buf.data[buf.pos : end].copy(),
            labels=buf.labels,
        )
