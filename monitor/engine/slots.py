"""Slot numbers for per-series state kept in arrays (one row per series), shared by the thresholds, the
alert tracker and the online normalisation (`monitor.models.online`): a freed slot is reused, and when
none is free every array of the owner grows by doubling, so adding a series costs amortised O(1) and a
batch of series is one fancy index away."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence

import numpy as np

MINIMUM_GROWTH = 16


class Slots:
    """Series → row of the owner's arrays named in `arrays` (attributes it reassigns when they grow)."""

    def __init__(self, owner: object, arrays: Sequence[str]) -> None:
        self.owner = owner
        self.arrays = tuple(arrays)
        self.index: dict[str, int] = {}
        self._free: list[int] = []

    def get(self, series: str) -> int | None:
        return self.index.get(series)

    def of(self, series: Sequence[str], new: Callable[[str], int]) -> np.ndarray:
        """The rows of a batch's series, looked up in C; `new` makes the row of a series not seen yet (the
        owner's `_slot`, which also resets it). Once per window in the scoring thread: a Python call per
        series there costs more than the lookup."""
        found = list(map(self.index.get, series))
        if None in found:
            found = [new(s) if slot is None else slot for s, slot in zip(series, found, strict=True)]
        return np.array(found, dtype=np.int64)

    def add(self, series: str) -> int:
        """A row for a new series; its old contents (of a series let go) are the caller's to reset."""
        self.index[series] = slot = self.take()
        return slot

    def take(self) -> int:
        """A row that belongs to no series in `index` (a template copied into new ones, or a row the owner
        keeps its own index of); the owner hands it back with `give_back` if ever."""
        if not self._free:
            self._grow()
        return self._free.pop()

    def give_back(self, rows: Sequence[int]) -> None:
        """Rows from `take` that are no longer used: the next series get them."""
        self._free.extend(rows)

    def pop(self, series: str) -> int | None:
        """Let a series go; its row is reused by the next one."""
        slot = self.index.pop(series, None)
        if slot is not None:
            self._free.append(slot)
        return slot

    def _grow(self) -> None:
        size = len(getattr(self.owner, self.arrays[0]))
        extra = max(MINIMUM_GROWTH, size)
        for name in self.arrays:
            array = getattr(self.owner, name)
            setattr(self.owner, name, np.concatenate([array, np.zeros((extra, *array.shape[1:]), dtype=array.dtype)]))
        self._free.extend(range(size + extra - 1, size - 1, -1))


def rounds(keys: Sequence[Hashable]) -> list[np.ndarray]:
    """Positions grouped so that no key appears twice in a group, in order: round k holds the k-th position
    of every key, so arrays with a row per key can be updated a round at a time (one fancy-index assignment
    per round) while each key still takes its positions in order."""
    if len(set(keys)) == len(keys):
        return [np.arange(len(keys))]
    seen: Counter[Hashable] = Counter()
    grouped: list[list[int]] = []
    for i, key in enumerate(keys):
        k = seen[key]
        seen[key] += 1
        if k == len(grouped):
            grouped.append([])
        grouped[k].append(i)
    return [np.array(r) for r in grouped]
