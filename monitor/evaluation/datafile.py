"""One labelled file of a corpus, whatever its layout: rows, features, labels and the rows that train."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.evaluation.nab import Labelled


@dataclass(frozen=True, eq=False)
class DataFile:
    """One labelled file: `name` is its path relative to the corpus (NAB: `category/file.csv`).

    The first `train_rows` rows train the file's model; every row is replayed, in order, so the engine's
    windows and thresholds warm up on them as a running daemon's would. Outlier scores count only the rows
    after them; NAB's own rules decide which of its rows count (its probationary period).
    """

    name: str
    timestamps: tuple[str, ...]
    """The time column as written, so output rows match input rows."""
    ts: np.ndarray
    values: np.ndarray
    """(rows, features) float64."""
    features: tuple[str, ...]
    labelled: Labelled
    train_rows: int
    time_column: str = "timestamp"
    label_column: str | None = None
    """The 0/1 column of a labelled CSV; None in NAB's layout, whose labels are windows of time."""

    @property
    def series(self) -> str:
        return self.name.removesuffix(".csv")

    @property
    def labels(self) -> np.ndarray:
        """A boolean per row: inside a labelled window (NAB) or labelled 1 (labelled CSV)."""
        flags = np.zeros(len(self.ts), dtype=bool)
        for first, last in self.labelled.windows:
            flags[first : last + 1] = True
        return flags
