"""The optimisation loop: Adam on reconstruction MSE, early stopping on validation loss, progress bar.

Kept apart from `training` (which prepares data and metadata) so the loop reads on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from monitor.errors import ModelError


@dataclass(frozen=True, slots=True)
class FitSettings:
    """The subset of `TrainOptions` the loop needs."""

    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int
    device: str


@dataclass(frozen=True, slots=True)
class FitReport:
    """How training went; losses are MSE in normalised units, `initial_val_loss` is before epoch 1."""

    epochs_run: int
    best_epoch: int
    train_loss: float
    val_loss: float
    initial_val_loss: float


def fit(
    model: nn.Module, train: np.ndarray, validation: np.ndarray, settings: FitSettings, progress: bool
) -> FitReport:
    """Train `model` in place on (N, W, F) float32 windows and leave it holding its best-validation weights.

    Stops after `patience` epochs without a lower validation loss; a loss that is never finite
    (diverged training) is a `ModelError`.
    """
    device = torch.device(settings.device)
    model.to(device)
    train_tensor = torch.from_numpy(train).to(device)
    validation_tensor = torch.from_numpy(validation).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    rng = np.random.default_rng(settings.seed)
    initial_val_loss = _validation_loss(model, validation_tensor, settings.batch_size)
    best: tuple[int, float, float, dict[str, torch.Tensor]] | None = None  # epoch, train, val, weights
    epochs = tqdm(range(1, settings.epochs + 1), desc="training", unit="epoch", disable=not progress)
    epoch = 0
    for epoch in epochs:
        train_loss = _train_epoch(model, optimiser, train_tensor, settings.batch_size, rng)
        val_loss = _validation_loss(model, validation_tensor, settings.batch_size)
        epochs.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}")
        if math.isfinite(val_loss) and (best is None or val_loss < best[2]):
            best = (epoch, train_loss, val_loss, _copy_weights(model))
        elif epoch - (best[0] if best else 0) >= settings.patience:
            break
    epochs.close()
    if best is None:
        raise ModelError("training diverged: the validation loss was never finite; lower learning_rate")
    model.load_state_dict(best[3])
    return FitReport(epoch, best[0], best[1], best[2], initial_val_loss)


def _train_epoch(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    windows: torch.Tensor,
    batch_size: int,
    rng: np.random.Generator,
) -> float:
    """One pass over the windows in a seeded random order; returns the mean training loss."""
    model.train()
    order = torch.from_numpy(rng.permutation(len(windows))).to(windows.device)
    total = 0.0
    for start in range(0, len(windows), batch_size):
        batch = windows[order[start : start + batch_size]]
        loss = nn.functional.mse_loss(model(batch), batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        total += loss.item() * len(batch)
    return total / len(windows)


def _validation_loss(model: nn.Module, windows: torch.Tensor, batch_size: int) -> float:
    """Mean squared reconstruction error over all validation windows."""
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size]
            total += nn.functional.mse_loss(model(batch), batch, reduction="sum").item()
    return total / windows.numel()


def _copy_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
