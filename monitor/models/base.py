"""The one interface every model kind follows, so training, scoring and loading never ask which kind it is.

A kind is an `Autoencoder`: `encode` a (B, W, F) window to a (B, latent) code, `decode` it back. Training
calls `training_loss`, which the base class defines as reconstruction MSE plus the optional L1 sparsity
penalty on the code; the VAE overrides it with its likelihood and KL terms. Scoring calls `forward` (the
deterministic reconstruction), or `pointwise_nll` for a kind that has a likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from monitor.errors import ModelError


@dataclass(frozen=True, slots=True)
class ModelShape:
    """Everything a kind needs to build its layers; stored in the artifact so loading rebuilds the same."""

    window: int
    n_features: int
    hidden: int
    latent: int
    layers: int
    hidden_steps: int = 0
    """Newest steps of a window hidden from the encoder (`Autoencoder.visible`): the scored ones, with
    `model.hide_scored`, so the model predicts them from the steps before instead of copying them."""


@dataclass(frozen=True, slots=True)
class Penalties:
    """Weights of the terms added to the reconstruction loss while training (0 turns a term off)."""

    sparse: float = 0.0
    """L1 penalty on the latent activations (a sparse autoencoder)."""
    kl_weight: float = 0.1
    """Weight of the KL divergence to the prior; used by kinds with a latent distribution (vae)."""


class Autoencoder(nn.Module):
    """Base of the model kinds: windows (B, W, F) in normalised units in, reconstructions of that shape out."""

    has_likelihood: ClassVar[bool] = False
    """Whether `pointwise_nll` is defined (the `nll` score method needs it)."""

    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, latent) code of the windows; deterministic (a VAE returns its posterior mean)."""
        raise NotImplementedError

    def decode(self, code: torch.Tensor, steps: int) -> torch.Tensor:
        """The (B, steps, F) reconstruction of a code."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(self.visible(x)), x.shape[1])

    def visible(self, x: torch.Tensor) -> torch.Tensor:
        """The windows as the encoder sees them: the newest `hidden_steps` steps replaced by the step before
        them (the last value carried forward), so what the model outputs for them is a prediction from the
        window's past. A model that sees a point reproduces part of its noise, and mostly the small part: its
        error on healthy noise is then small against its error on a rare larger deviate, a tail that pages
        (docs/evaluation.md#where-the-fleets-false-alerts-come-from-the-model-copies-the-noise)."""
        hidden = self.shape.hidden_steps
        if not hidden:
            return x
        last = x[:, -hidden - 1 : -hidden]
        return torch.cat((x[:, :-hidden], last.expand(-1, hidden, -1)), dim=1)

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, penalties: Penalties) -> torch.Tensor:
        """Loss of reconstructing `targets` from `inputs` (they differ when training a denoising model)."""
        code = self.encode(self.visible(inputs))
        loss = nn.functional.mse_loss(self.decode(code, inputs.shape[1]), targets)
        return loss + penalties.sparse * code.abs().mean() if penalties.sparse else loss

    def pointwise_nll(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W, F) negative log-likelihood of each value, shifted to be >= 0; only kinds with a likelihood."""
        raise ModelError(f"model kind {type(self).__name__} has no likelihood; use the reconstruction score")
