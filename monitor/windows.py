"""Per-series ring buffers that turn a stream of points into windows to score.

Each series keeps its last `window` points. Once full, a window is emitted on the point that fills it
and then every `stride` points. Points older than or equal to the newest point of their series are
dropped (late or duplicate) and counted; so is a point that lacks one of the detector's features. When
more than `max_series` series are tracked, the least recently updated one is evicted.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from monitor.records import Point, Window


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


class WindowStore:
    """Owns the buffers of one detector's series."""

    def __init__(
        self,
        window: int,
        stride: int,
        features: Sequence[str],
        max_series: int,
        on_evict: Callable[[str], None] | None = None,
    ) -> None:
        self.window = window
        self.on_evict = on_evict
        self.stride = stride
        self.features = tuple(features)
        self.max_series = max_series
        self.dropped: Counter[str] = Counter()
        self._buffers: OrderedDict[str, _Buffer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buffers)

    def add(self, point: Point) -> Window | None:
        """Append a point; returns the window to score when this point completes one."""
        row = self._row(point)
        if row is None:
            self.dropped["missing_feature"] += 1
            return None
        buf = self._buffer(point)
        if point.ts <= buf.last_ts:
            self.dropped["duplicate" if point.ts == buf.last_ts else "late"] += 1
            return None
        self._append(buf, point.ts, row)
        if buf.filled < self.window or buf.since_emit < self.stride:
            return None
        buf.since_emit = 0
        return self._window(point.series, buf)

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
        # Counting from stride - window makes the first full window due at once, later ones every stride.
        buf.since_emit = self.stride - self.window
        self._buffers[point.series] = buf
        return buf

    def _append(self, buf: _Buffer, ts: float, row: list[float]) -> None:
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
