"""Reconstruction error of normalised windows: the one reduction that both the scorer and training use.

Validation scores written at training time seed the daemon's thresholds, so they must be computed
exactly like live scores; keeping the reduction in one function is what guarantees it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from monitor.engine.scoring import Scores

MAX_BATCH = 256
"""Rows per forward pass: large enough to amortise the per-call overhead, small enough to bound memory."""

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
) -> Scores:
    """Window scores and (B, F) per-feature errors, float64, of (B, W, F) normalised windows.

    `feature_errors[i, f]` is the mean squared reconstruction error of feature f over the scored steps
    of window i (with `method="nll"`, the mean negative log-likelihood of its values, see
    `Autoencoder.pointwise_nll`), and `scores[i]` is its mean over the features. Only the first
    `features` columns count (None: all); the rest are inputs only, like the calendar columns of
    `monitor.models.seasons`. The windows go through the model in chunks of `max_batch` rows, one
    forward pass per chunk, on `device` (the model's; None: the CPU), and the errors come back as numpy.
    """
    normalised = np.ascontiguousarray(normalised, dtype=np.float32)
    batch_size, window, n_inputs = normalised.shape
    n_features = n_inputs if features is None else features
    steps = scored_steps(window, score_tail)
    errors = np.empty((batch_size, n_features), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, batch_size, max_batch):
            chunk = torch.from_numpy(normalised[start : start + max_batch])
            if device is not None:
                chunk = chunk.to(device)
            if method == "nll":
                pointwise = model.pointwise_nll(chunk).double()
            else:
                pointwise = (model(chunk) - chunk).double().square()
            errors[start : start + len(chunk)] = pointwise[:, -steps:, :n_features].mean(dim=1).cpu().numpy()
    return Scores(scores=errors.mean(axis=1), feature_errors=errors)
