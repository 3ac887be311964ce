"""The seam between the engine and the models: what the detector needs from a scorer.

The engine never imports torch; it hands a batch of raw windows to something that follows `Scorer`
and gets one score per window back. `monitor.models` provides the torch implementation; unit tests use a
tiny numpy one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Times = Sequence[float] | None
"""The first (or last) timestamp of each window of a batch, for models that take the time as an input."""


@dataclass(frozen=True, slots=True)
class Scores:
    """Scores of a batch of windows.

    `scores[i]` is the anomaly score of window i (a reconstruction error in normalised units, larger is
    worse); `feature_errors[i, f]` is the part of it that feature f contributed, for `top_features`.
    `provisional[i]` is True when window i was scored with a normalisation its series is still learning
    (a series the model never saw, see `monitor.models.online`): such a score is not in the units of the
    threshold yet, so it is neither judged nor learned from. None: every score is final.
    """

    scores: np.ndarray  # (B,)
    feature_errors: np.ndarray  # (B, F)
    provisional: np.ndarray | None = None  # (B,) bool


class Scorer(Protocol):
    """Scores windows of raw values; normalisation is the scorer's business (it comes with the model)."""

    @property
    def version(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def features(self) -> tuple[str, ...]: ...

    @property
    def window(self) -> int: ...

    def score(self, series: Sequence[str], batch: np.ndarray, start: Times = None, end: Times = None) -> Scores:
        """`batch` has shape (B, window, n_features) in raw units; `series[i]` names the series of row i,
        `start[i]` and `end[i]` the timestamps of its first and last point."""
        ...

    def baseline_scores(self) -> np.ndarray:
        """Scores of healthy validation windows, used to seed every series' threshold statistics."""
        ...
