"""`TorchScorer`: the `monitor.scoring.Scorer` that the daemon uses, backed by a loaded artifact."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monitor.errors import ModelError
from monitor.models.artifact import LoadedModel, load_artifact
from monitor.models.inference import MAX_BATCH, reconstruction_scores
from monitor.models.normalisation import normalise
from monitor.models.online import OnlineNormalisation
from monitor.models.store import resolve
from monitor.scoring import Scores

ONLINE_MAX_SERIES = 100_000


class TorchScorer:
    """Scores raw windows: normalise per series, one batched forward pass, reconstruction error.

    `threads` sets torch's (process-wide) intra-op thread count: one is fastest on small machines where
    the daemon shares the cores with Kafka I/O; larger hosts can raise it. Series the model never saw
    learn their own normalisation over their first `online_warmup` windows (`monitor.models.online`);
    with 0 they use the statistics pooled over the training series.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        threads: int = 1,
        max_batch: int = MAX_BATCH,
        online_warmup: int = 0,
        max_series: int = ONLINE_MAX_SERIES,
    ) -> None:
        torch.set_num_threads(threads)
        self._model = loaded.module.eval()
        self._metadata = loaded.metadata
        self._max_batch = max_batch
        self._baseline = np.asarray(loaded.metadata.validation_scores, dtype=np.float64)
        normalisation = loaded.metadata.normalisation
        self.online = OnlineNormalisation(normalisation.floor, online_warmup, max_series) if online_warmup else None

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], threads: int = 1, online_warmup: int = 0, max_series: int = ONLINE_MAX_SERIES
    ) -> TorchScorer:
        """Load what the store (or single artifact) at `path` serves; a bad one is a `ModelError` naming it."""
        return cls(load_artifact(resolve(path)), threads=threads, online_warmup=online_warmup, max_series=max_series)

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

    @property
    def score_method(self) -> str:
        return self._metadata.score_method

    def baseline_scores(self) -> np.ndarray:
        """The validation scores stored at training time (a copy: callers may sort it in place)."""
        return self._baseline.copy()

    def inherit(self, previous: TorchScorer) -> None:
        """Keep what `previous` learned online about unseen series (a hot reload must not forget it)."""
        if self.online is not None and previous.online is not None:
            self.online.inherit(previous.online, known=set(self._metadata.normalisation.series))

    def series_state(self, series: str) -> dict[str, Any] | None:
        """What scoring learned about one series (its online normalisation), for a checkpoint."""
        return None if self.online is None else self.online.snapshot(series)

    def restore_series(self, series: str, state: Mapping[str, Any]) -> None:
        """Take back `series_state` after a restart or a partition move (series the model knows need none)."""
        if self.online is not None and series not in self._metadata.normalisation.series:
            self.online.restore(series, state)

    def score(self, series: Sequence[str], batch: np.ndarray) -> Scores:
        """Scores of (B, window, n_features) raw windows; row i belongs to `series[i]`.

        A batch of the wrong shape means the detector and the model disagree (e.g. a hot reload to a
        model with another window or feature list): a `ModelError` the caller can report and survive.
        """
        batch = np.asarray(batch, dtype=np.float64)
        self._check_shape(series, batch)
        if len(batch) == 0:
            return Scores(np.empty(0), np.empty((0, self._metadata.n_features)))
        normalised = self._normalise(series, batch)
        return reconstruction_scores(
            self._model, normalised, self._metadata.score_tail, self._max_batch, self._metadata.score_method
        )

    def _normalise(self, series: Sequence[str], batch: np.ndarray) -> np.ndarray:
        table = self._metadata.normalisation
        means, stds = table.rows(series)
        if self.online is not None:
            unseen = [i for i, name in enumerate(series) if name not in table.series]
            if unseen:
                learned = self.online.rows([series[i] for i in unseen], batch[unseen])
                means[unseen], stds[unseen] = learned
        return normalise(batch, means, stds)

    def _check_shape(self, series: Sequence[str], batch: np.ndarray) -> None:
        expected = (len(series), self.window, self._metadata.n_features)
        if batch.shape != expected:
            raise ModelError(
                f"model {self.version} expects a batch of shape (B, {self.window}, "
                f"{self._metadata.n_features}) with B = len(series) = {len(series)}, got {batch.shape}"
            )
