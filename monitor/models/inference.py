"""Reconstruction error of normalised windows: the one reduction that both the scorer and training use.

Validation scores written at training time seed the daemon's thresholds, so they must be computed
exactly like live scores; keeping the reduction in one function is what guarantees it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
import torch
from torch import nn

from monitor.engine.scoring import Scores

MAX_BATCH = 256
"""Rows per forward pass: large enough to amortise the per-call overhead, small enough to bound memory."""
MIN_SPLIT = 128
"""Fewest rows a batch is cut into for a pool of threads: below, a forward pass is mostly call overhead."""
ROW_QUANTUM = 16
"""A forward pass runs on a batch of rows rounded up to a multiple of this (a power of two below it), the
rows added being zeros. oneDNN, which runs torch's LSTM and convolution layers on the CPU, builds a
primitive with JIT-compiled code for every batch shape it meets and keeps it for the life of the process,
about 0.4 MiB each: fed polls of every size, a daemon kept growing for hours (44 MiB from the 15th to the
60th minute of `bench/fleet.py`). Rounded, a scorer meets at most 20 shapes at the default `MAX_BATCH` of
256, one more for a `max_batch` off that ladder (docs/performance.md#batch-shapes)."""

Forward = nn.Module | Callable[[torch.Tensor], torch.Tensor]
"""The module, or another runtime's forward pass of it (`monitor.models.onnx_backend`): same reduction either way."""


def scored_steps(window: int, score_tail: int) -> int:
    """How many of the last steps of a window count: `score_tail`, or all of them when it is 0 or too big."""
    return window if score_tail <= 0 or score_tail >= window else score_tail


def reconstruction_scores(
    model: Forward,
    normalised: np.ndarray,
    score_tail: int,
    max_batch: int = MAX_BATCH,
    method: str = "reconstruction",
    features: int | None = None,
    device: torch.device | None = None,
    pool: Executor | None = None,
    workers: int = 1,
    traced: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Scores:
    """Window scores and (B, F) per-feature errors, float64, of (B, W, F) normalised windows.

    `feature_errors[i, f]` is the mean squared reconstruction error of feature f over the scored steps
    of window i (with `method="nll"`, the mean negative log-likelihood of its values, see
    `Autoencoder.pointwise_nll`), and `scores[i]` is its mean over the features. Only the first
    `features` columns count (None: all); the rest are inputs only, like the calendar columns of
    `monitor.models.seasons`. The windows go through the model in chunks of at most `max_batch` rows, one
    forward pass per chunk, on `device` (the model's; None: the CPU), and the errors come back as numpy.

    With a `pool` of `workers` threads the chunks run side by side, each forward pass on one core: a
    batch is cut into at least `workers` chunks (none under `MIN_SPLIT` rows). Coarse chunks scale
    where torch's own intra-op threads do not: those meet at every step of the recurrence, and stall
    as soon as any other thread has run a parallel region (docs/performance.md#scoring-threads).
    A row's score can differ in the last float bits with the size of its chunk, as between polls.
    `traced` (`traced_errors`) is the forward pass and this reduction as one call, the same numbers.
    """
    normalised = np.ascontiguousarray(normalised, dtype=np.float32)
    batch_size, window, n_inputs = normalised.shape
    n_features = n_inputs if features is None else features
    steps = scored_steps(window, score_tail)
    errors = np.empty((batch_size, n_features), dtype=np.float64)

    def score_chunk(start: int, size: int) -> None:
        rows = normalised[start : start + size]
        real = len(rows)
        with torch.inference_mode():
            chunk = torch.from_numpy(padded(rows, min(padded_rows(real), size)))
            if traced is not None:
                errors[start : start + real] = traced(chunk).numpy()[:real]
                return
            if device is not None:
                chunk = chunk.to(device)
            chunk_errors = window_errors(pointwise_errors(model, chunk, method), steps, n_features)
            errors[start : start + real] = chunk_errors[:real].cpu().numpy()

    size = max_batch if pool is None else min(max_batch, padded_rows(max(MIN_SPLIT, -(-batch_size // workers))))
    starts = range(0, batch_size, size)
    if pool is None or len(starts) == 1:
        for start in starts:
            score_chunk(start, size)
    else:
        for done in [pool.submit(score_chunk, start, size) for start in starts]:
            done.result()
    return Scores(scores=errors.mean(axis=1), feature_errors=errors)


def pointwise_errors(model: Forward, chunk: torch.Tensor, method: str) -> torch.Tensor:
    """(B, W, F) float64 error of every step and feature: the squared reconstruction error, or with
    `method="nll"` the negative log-likelihood (`Autoencoder.pointwise_nll`)."""
    if method == "nll":
        return model.pointwise_nll(chunk).double()
    return (model(chunk) - chunk).double().square()


def window_errors(pointwise: torch.Tensor, steps: int, features: int) -> torch.Tensor:
    """(B, features): each feature's mean error over the last `steps` steps."""
    return pointwise[:, -steps:, :features].mean(dim=1)


class _Errors(nn.Module):
    """The forward pass and the reconstruction errors of a window as one module, for `traced_errors`."""

    def __init__(self, model: nn.Module, steps: int, features: int) -> None:
        super().__init__()
        self.model, self.steps, self.features = model, steps, features

    def forward(self, chunk: torch.Tensor) -> torch.Tensor:
        return window_errors(pointwise_errors(self.model, chunk, "reconstruction"), self.steps, self.features)


def traced_errors(
    model: nn.Module, window: int, n_inputs: int, score_tail: int, features: int
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The model's forward pass and the reduction of `reconstruction_scores` traced into one TorchScript
    call, or None when tracing fails or the traced call differs from the eager one on a probe batch.

    Why: each torch operation called from Python gives up the interpreter lock and takes it back after.
    While another thread runs Python (the run loop decoding the next poll), every take-back waits until
    that thread yields, up to the switch interval (5 ms), and the eager forward pass and reduction are
    about fifteen operations: with a thread spinning Python beside them, two forward threads scored about
    4,000 windows/s eager against 18,000 traced (110,000 to 120,000 either way alone; docs/performance.md).
    """
    errors = _Errors(model, scored_steps(window, score_tail), features).eval()
    probe = torch.randn(3, window, n_inputs, generator=torch.Generator().manual_seed(0))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch.jit.trace is deprecated (for torch.export); None if it goes
            traced = torch.jit.trace(errors, torch.zeros(2, window, n_inputs), check_trace=False)
        with torch.inference_mode():
            same = torch.equal(traced(probe), errors(probe))
    except Exception:  # a model the tracer cannot follow is scored eagerly, with the same numbers
        return None
    return traced if same else None


def padded_rows(rows: int) -> int:
    """How many rows a forward pass of `rows` windows runs on: the next multiple of `ROW_QUANTUM`, or below
    it the next power of two, so that the shapes a scorer meets stay few (see `ROW_QUANTUM`)."""
    if rows >= ROW_QUANTUM:
        return -(-rows // ROW_QUANTUM) * ROW_QUANTUM
    return 1 << max(rows - 1, 0).bit_length()


def batch_shapes(max_batch: int) -> list[int]:
    """Every row count a forward pass can run on when chunks hold at most `max_batch` rows: the ladder of
    `padded_rows` up to `max_batch`, and `max_batch` itself."""
    return sorted({min(padded_rows(rows), max_batch) for rows in range(1, max_batch + 1)})


def padded(rows: np.ndarray, size: int) -> np.ndarray:
    """`rows` followed by zero rows up to `size` rows (`rows` itself when it has them already)."""
    if len(rows) >= size:
        return rows
    return np.concatenate([rows, np.zeros((size - len(rows), *rows.shape[1:]), dtype=rows.dtype)])
