"""`TorchScorer`: the `monitor.engine.scoring.Scorer` that the daemon uses, backed by a loaded artifact."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn

from monitor.engine.scoring import Scores, Times
from monitor.errors import ModelError
from monitor.logs import event
from monitor.models.artifact import LoadedModel, load_artifact
from monitor.models.device import resolve_device
from monitor.models.inference import MAX_BATCH, batch_shapes, reconstruction_scores, traced_errors
from monitor.models.normalisation import normalise
from monitor.models.online import OnlineNormalisation, fleet_alike
from monitor.models.onnx_backend import BACKENDS, OnnxForward, onnx_forward
from monitor.models.seasons import with_calendar
from monitor.models.store import resolve

ONLINE_MAX_SERIES = 100_000

log = logging.getLogger(__name__)


class TorchScorer:
    """Scores raw windows: normalise per series, one batched forward pass, reconstruction error.

    `threads` > 1 scores the chunks of a batch side by side in that many threads, torch's (process-wide)
    intra-op thread count set to one; on a GPU, or for ONNX Runtime, it is their intra-op thread count
    instead. Series the model never saw learn their own normalisation over their first `online_warmup`
    windows (`monitor.models.online`); with 0 they use the statistics pooled over the training series.

    `backend="onnx"` runs the forward pass in ONNX Runtime (`monitor.models.onnx_backend`) with `threads`
    intra-op threads; a model it cannot serve is scored with torch after one warning line, and `backend`
    then says "torch". `device="cuda"` runs torch's forward passes on a GPU (the windows are normalised on
    the CPU and copied over per chunk); asked for without one, it is a `ModelError` at load.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        threads: int = 1,
        max_batch: int = MAX_BATCH,
        online_warmup: int = 0,
        max_series: int = ONLINE_MAX_SERIES,
        backend: str = "torch",
        device: str = "cpu",
    ) -> None:
        self._device = resolve_device(device, "scoring.device", "score on the CPU with scoring.device: cpu")
        if backend != "torch" and self._device.type != "cpu":
            raise ModelError(f"scoring.device {device} needs the torch backend, not {backend}")
        self._model = loaded.module.eval().to(self._device)
        self._metadata = loaded.metadata
        if backend not in BACKENDS:
            raise ModelError(f"unknown scoring backend {backend!r} (known: {', '.join(BACKENDS)})")
        self._forward = self._model if backend == "torch" else self._onnx(threads)
        side_by_side = threads > 1 and self.backend == "torch" and self._device.type == "cpu"
        torch.set_num_threads(1 if side_by_side else threads)
        self._workers = threads if side_by_side else 1
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="forward") if side_by_side else None
        """torch on the CPU with `threads` > 1: that many forward passes side by side, one core each
        (`reconstruction_scores`); its threads end when the scorer is dropped (a hot reload)."""
        self._traced = self._traced_errors()
        self._max_batch = max_batch
        self._warm = threading.local()
        self._warm_pool()
        self._baseline = np.asarray(loaded.metadata.validation_scores, dtype=np.float64)
        normalisation = loaded.metadata.normalisation
        self.online = None
        if online_warmup:
            alike = fleet_alike(list(normalisation.series.values())) if normalisation.series else None
            self.online = OnlineNormalisation(
                normalisation.floor, online_warmup, max_series, normalisation.default, alike
            )

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        threads: int = 1,
        online_warmup: int = 0,
        max_series: int = ONLINE_MAX_SERIES,
        backend: str = "torch",
        max_batch: int = MAX_BATCH,
        device: str = "cpu",
    ) -> TorchScorer:
        """Load what the store (or single artifact) at `path` serves; a bad one is a `ModelError` naming it."""
        loaded = load_artifact(resolve(path))
        return cls(loaded, threads, max_batch, online_warmup, max_series, backend, device)

    def _onnx(self, threads: int) -> nn.Module | OnnxForward:
        """The ONNX Runtime forward pass of the model, or the module itself (with a warning) when it has none."""
        meta = self._metadata
        forward, reason = onnx_forward(self._model, meta.window, meta.n_inputs, meta.score_method, threads)
        if forward is None:
            event(log, "onnx_fallback", logging.WARNING, version=meta.version, kind=meta.kind, reason=reason)
            return self._model
        return forward

    def _traced_errors(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The forward pass and reduction as one call (`traced_errors`) where the torch backend scores
        reconstruction errors on the CPU; None elsewhere, and for a model the tracer cannot follow."""
        meta = self._metadata
        if self.backend != "torch" or self._device.type != "cpu" or meta.score_method != "reconstruction":
            return None
        return traced_errors(self._model, meta.window, meta.n_inputs, meta.score_tail, meta.n_features)

    @property
    def traced(self) -> bool:
        """Whether a forward pass and its reduction run as one traced call (`traced_errors`)."""
        return self._traced is not None

    @property
    def backend(self) -> str:
        """The backend that runs the forward pass: "onnx", or "torch" (asked for, or fallen back to)."""
        return "torch" if self._forward is self._model else "onnx"

    @property
    def device(self) -> str:
        """Where the forward passes run: "cpu", "cuda", "cuda:1"."""
        return str(self._device)

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
    def calendar(self) -> tuple[str, ...]:
        """The periods whose phase the model takes as inputs (`monitor.models.seasons`)."""
        return self._metadata.calendar

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

    def score(self, series: Sequence[str], batch: np.ndarray, start: Times = None, end: Times = None) -> Scores:
        """Scores of (B, window, n_features) raw windows; row i belongs to `series[i]` and spans the
        timestamps `start[i]`..`end[i]`, which only a model with calendar inputs needs.

        A batch of the wrong shape means the detector and the model disagree (e.g. a hot reload to a
        model with another window or feature list): a `ModelError` the caller can report and survive.
        """
        meta = self._metadata
        batch = np.asarray(batch, dtype=np.float64)
        self._check_shape(series, batch)
        if len(batch) == 0:
            return Scores(np.empty(0), np.empty((0, meta.n_features)))
        self._warm_thread()
        normalised, provisional = self._normalise(series, batch)
        if meta.calendar:
            if start is None or end is None:
                raise ModelError(f"model {meta.version} has calendar inputs {meta.calendar}: windows need their times")
            normalised = with_calendar(normalised, start, end, meta.calendar)
        scores = self._scores(normalised, self._pool)
        return scores if provisional is None else dataclasses.replace(scores, provisional=provisional)

    def _scores(self, normalised: np.ndarray, pool: ThreadPoolExecutor | None) -> Scores:
        meta = self._metadata
        return reconstruction_scores(
            self._forward,
            normalised,
            meta.score_tail,
            self._max_batch,
            meta.score_method,
            meta.n_features,
            self._device,
            pool,
            self._workers,
            self._traced,
        )

    def _warm_thread(self) -> None:
        """A forward pass of every batch shape this scorer can meet (`batch_shapes`), on the calling thread,
        once per thread; only for torch on the CPU (the oneDNN case below), and only the shapes up to the
        default `MAX_BATCH` (20 of them): a larger `max_batch` meets its larger shapes as they come, so that
        its start stays quick.

        Why: oneDNN, which runs torch's layers on the CPU, keeps code and buffers for every batch shape a
        thread meets, for the life of the process (`monitor.models.inference.ROW_QUANTUM`), about 10 MiB
        a thread for the 20. Met as polls of new sizes came, that memory came in over hours, the rare
        sizes last; met here, before the first window is scored, it is taken at start, and no poll waits
        for a shape to be built (docs/performance.md#batch-shapes)."""
        if self.backend != "torch" or self._device.type != "cpu" or getattr(self._warm, "done", False):
            return
        meta = self._metadata
        for rows in batch_shapes(min(self._max_batch, MAX_BATCH)):
            self._scores(np.zeros((rows, meta.window, meta.n_inputs), dtype=np.float32), None)
        self._warm.done = True

    def _warm_pool(self) -> None:
        """`_warm_thread` on each thread of the pool: every task waits for all of them to be running, so
        each runs on a thread of its own."""
        if self._pool is None:
            return
        gate = threading.Barrier(self._workers)

        def warm() -> None:
            gate.wait()
            self._warm_thread()

        for done in [self._pool.submit(warm) for _ in range(self._workers)]:
            done.result()

    def _normalise(self, series: Sequence[str], batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The normalised batch, and which rows were normalised with statistics still being learned
        online (None: no row was)."""
        table = self._metadata.normalisation
        means, stds = table.rows(series)
        provisional = None
        if self.online is not None:
            unseen = [i for i, name in enumerate(series) if name not in table.series]
            if unseen:
                means[unseen], stds[unseen], learning = self.online.rows([series[i] for i in unseen], batch[unseen])
                if learning.any():
                    provisional = np.zeros(len(series), dtype=bool)
                    provisional[unseen] = learning
        return normalise(batch, means, stds), provisional

    def _check_shape(self, series: Sequence[str], batch: np.ndarray) -> None:
        expected = (len(series), self.window, self._metadata.n_features)
        if batch.shape != expected:
            raise ModelError(
                f"model {self.version} expects a batch of shape (B, {self.window}, "
                f"{self._metadata.n_features}) with B = len(series) = {len(series)}, got {batch.shape}"
            )
