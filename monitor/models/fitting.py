"""The optimisation loop: Adam on the kind's training loss, early stopping on validation error, progress bar.

Kept apart from `training` (which prepares data and metadata) so the loop reads on its own. Every kind
goes through the same loop: denoising corrupts the inputs here (the targets stay clean), and the kind's
`training_loss` adds its own terms (sparsity, KL). Early stopping watches the validation reconstruction
MSE on clean windows rather than the training objective, because that is what the detector scores and it
is comparable between kinds and options.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from monitor.errors import ModelError
from monitor.models.base import Autoencoder, Penalties
from monitor.models.device import resolve_device

DENOISING = ("none", "gaussian", "mask")
KL_WARMUP_EPOCHS = 5


@dataclass(frozen=True, slots=True)
class FitSettings:
    """The subset of `TrainOptions` the loop needs."""

    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int
    device: str
    denoising: str = "none"
    """`gaussian`: add N(0, noise²) to each input value; `mask`: zero each one with probability `noise`."""
    noise: float = 0.1
    penalties: Penalties = field(default_factory=Penalties)
    ema: float = 0.0
    """Decay per optimiser step of an exponential moving average of the weights, which is what is
    validated and kept (0: the weights themselves)."""


@dataclass(frozen=True, slots=True)
class FitReport:
    """How training went; losses are MSE in normalised units, `initial_val_loss` is before epoch 1.

    `train_loss` is the training objective of the best epoch (it includes the kind's extra terms),
    `train_losses` and `val_losses` are the curves, one value per epoch run.
    """

    epochs_run: int
    best_epoch: int
    train_loss: float
    val_loss: float
    initial_val_loss: float
    train_losses: list[float]
    val_losses: list[float]


def fit(
    model: Autoencoder, train: np.ndarray, validation: np.ndarray, settings: FitSettings, progress: bool
) -> FitReport:
    """Train `model` in place on (N, W, F) float32 windows and leave it holding its best-validation weights:
    with `ema`, the best of their moving average, which the last noisy steps of a small data set move less.

    Stops after `patience` epochs without a lower validation loss; a loss that is never finite
    (diverged training) is a `ModelError`.
    """
    device = resolve_device(settings.device)
    model.to(device)
    train_tensor = torch.from_numpy(train).to(device)
    validation_tensor = torch.from_numpy(validation).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    average = WeightAverage(model, settings.ema) if settings.ema > 0 else None
    kept = average.model if average is not None else model
    rng = np.random.default_rng(settings.seed)
    noise = torch.Generator(device=device).manual_seed(settings.seed)
    initial_val_loss = _validation_loss(model, validation_tensor, settings.batch_size)
    best: tuple[int, float, float, dict[str, torch.Tensor]] | None = None  # epoch, train, val, weights
    curves: tuple[list[float], list[float]] = ([], [])
    epochs = tqdm(range(1, settings.epochs + 1), desc="training", unit="epoch", disable=not progress)
    epoch = 0
    for epoch in epochs:
        penalties = _annealed(settings.penalties, epoch)
        train_loss = _train_epoch(model, optimiser, train_tensor, settings, penalties, rng, noise, average)
        val_loss = _validation_loss(kept, validation_tensor, settings.batch_size)
        curves[0].append(train_loss)
        curves[1].append(val_loss)
        epochs.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}")
        if math.isfinite(val_loss) and (best is None or val_loss < best[2]):
            best = (epoch, train_loss, val_loss, _copy_weights(kept))
        elif epoch - (best[0] if best else 0) >= settings.patience:
            break
    epochs.close()
    if best is None:
        raise ModelError("training diverged: the validation loss was never finite; lower learning_rate")
    model.load_state_dict(best[3])
    return FitReport(epoch, best[0], best[1], best[2], initial_val_loss, *curves)


def corrupt(windows: torch.Tensor, settings: FitSettings, generator: torch.Generator) -> torch.Tensor:
    """The inputs a denoising autoencoder sees: the windows with seeded Gaussian noise or masked values."""
    if settings.denoising == "gaussian":
        noise = torch.randn(windows.shape, generator=generator, device=windows.device)
        return windows + settings.noise * noise
    if settings.denoising == "mask":
        keep = torch.rand(windows.shape, generator=generator, device=windows.device) >= settings.noise
        return windows * keep
    return windows


def _train_epoch(
    model: Autoencoder,
    optimiser: torch.optim.Optimizer,
    windows: torch.Tensor,
    settings: FitSettings,
    penalties: Penalties,
    rng: np.random.Generator,
    noise: torch.Generator,
    average: WeightAverage | None,
) -> float:
    """One pass over the windows in a seeded random order; returns the mean training loss."""
    model.train()
    order = torch.from_numpy(rng.permutation(len(windows))).to(windows.device)
    total = 0.0
    for start in range(0, len(windows), settings.batch_size):
        batch = windows[order[start : start + settings.batch_size]]
        loss = model.training_loss(corrupt(batch, settings, noise), batch, penalties)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if average is not None:
            average.follow(model)
        total += loss.item() * len(batch)
    return total / len(windows)


class WeightAverage:
    """An exponential moving average of a model's weights, bias-corrected as Adam corrects its moments:
    after step t it is the average of the t weights seen so far with weights decay^(t - s), so the random
    initial weights never count and a short training (`monitor train --epochs 5`) is not pulled back to
    its start."""

    def __init__(self, model: Autoencoder, decay: float) -> None:
        self.model, self.decay, self.steps = copy.deepcopy(model), decay, 0

    def follow(self, model: Autoencoder) -> None:
        """Take in the weights after one more optimiser step (buffers, which no kind has today, are copied)."""
        self.steps += 1
        share = (1.0 - self.decay) / (1.0 - self.decay**self.steps)
        with torch.no_grad():
            for kept, current in zip(self.model.parameters(), model.parameters(), strict=True):
                kept.lerp_(current, share)
            for kept, current in zip(self.model.buffers(), model.buffers(), strict=True):
                kept.copy_(current)


def _annealed(penalties: Penalties, epoch: int) -> Penalties:
    """The KL weight grows linearly over the first `KL_WARMUP_EPOCHS` epochs (KL annealing).

    With the full weight from the first step, the KL term wins before the decoder has learned to use
    the code, and a VAE settles on reconstructing the mean window (posterior collapse).
    """
    return dataclasses.replace(penalties, kl_weight=penalties.kl_weight * min(1.0, epoch / KL_WARMUP_EPOCHS))


def _validation_loss(model: Autoencoder, windows: torch.Tensor, batch_size: int) -> float:
    """Mean squared reconstruction error over all (clean) validation windows."""
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size]
            total += torch.nn.functional.mse_loss(model(batch), batch, reduction="sum").item()
    return total / windows.numel()


def _copy_weights(model: Autoencoder) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
