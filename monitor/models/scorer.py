"""`TorchScorer`: the `monitor.scoring.Scorer` that the daemon uses, backed by a loaded artifact."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from monitor.errors import ModelError
from monitor.models.artifact import LoadedModel, load_artifact
from monitor.models.inference import MAX_BATCH, reconstruction_scores
from monitor.scoring import Scores


class TorchScorer:
    """Scores raw windows: normalise per series, one batched forward pass, reconstruction error.

    `threads` sets torch's (process-wide) intra-op thread count: one is fastest on small machines where
    the daemon shares the cores with Kafka I/O; larger hosts can raise it.
    """

    def __init__(self, loaded: LoadedModel, threads: int = 1, max_batch: int = MAX_BATCH) -> None:
        torch.set_num_threads(threads)
        self._model = loaded.module.eval()
        self._metadata = loaded.metadata
        self._max_batch = max_batch
        self._baseline = np.asarray(loaded.metadata.validation_scores, dtype=np.float64)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], threads: int = 1) -> TorchScorer:
        """Load the artifact directory at `path`; a bad artifact is a `ModelError` naming it."""
        return cls(load_artifact(path), threads=threads)

    @property
    def version(self) -> str:
        return self._metadata.version

    @property
    def kind(self) -> str:
        return self._metadata.kind

    @property
    def features(self) -> tuple[str, ...]:
        return self._metadata.features

    @property
    def window(self) -> int:
        return self._metadata.window

    def baseline_scores(self) -> np.ndarray:
        """The validation scores stored at training time (a copy: callers may sort it in place)."""
        return self._baseline.copy()

    def score(self, series: Sequence[str], batch: np.ndarray) -> Scores:
        """Scores of (B, window, n_features) raw windows; row i belongs to `series[i]`.

        A batch of the wrong shape means the detector and the model disagree (e.g. a hot reload to a
        model with another window or feature list): a `ModelError` the caller can report and survive.
        """
        batch = np.asarray(batch, dtype=np.float64)
        self._check_shape(series, batch)
        if len(batch) == 0:
            return Scores(np.empty(0), np.empty((0, self._metadata.n_features)))
        normalised = self._metadata.normalisation.apply(series, batch)
        return reconstruction_scores(self._model, normalised, self._metadata.score_tail, self._max_batch)

    def _check_shape(self, series: Sequence[str], batch: np.ndarray) -> None:
        expected = (len(series), self.window, self._metadata.n_features)
        if batch.shape != expected:
            raise ModelError(
                f"model {self.version} expects a batch of shape (B, {self.window}, "
                f"{self._metadata.n_features}) with B = len(series) = {len(series)}, got {batch.shape}"
            )
