"""The LSTM variational autoencoder: a Gaussian posterior over the code and a Gaussian likelihood per value.

The encoder gives the mean and log-variance of q(z | window); training decodes a reparameterised sample
z = mu + sigma * eps. The objective has three parts, each per value:

- the squared error of the decoder's mean (what every kind minimises), so the VAE reconstructs as well
  as the plain LSTM autoencoder and is scored on the same scale by default;
- `kl_weight` × KL(q || N(0, I)), the variational regulariser (weights below 1 make it a beta-VAE);
- the Gaussian negative log-likelihood of the values under the decoder's mean and a per-value variance
  head. The head reads the decoder's states with gradients stopped, and the mean is held fixed in this
  term: learned jointly, the variance first explains everything as noise and the mean never leaves the
  average window. The variance is what makes the optional `nll` score meaningful: a value far from the
  mean where the model is sure (small variance) costs more than the same distance where it expects noise.

Scoring is deterministic: it decodes the posterior mean, so one window always gets one score.
"""

from __future__ import annotations

import torch
from torch import nn

from monitor.models.base import ModelShape, Penalties
from monitor.models.lstm import LSTMAutoencoder

LOGVAR_MIN, LOGVAR_MAX = -8.0, 6.0
"""Bounds on the decoder's log-variance, so the likelihood cannot grow without limit on a perfect fit."""
POSTERIOR_LOGVAR_START = -4.0
"""Added to the encoder's log-variance, so training starts with a posterior sd near 0.14 instead of 1:
with unit noise on the code the decoder learns to ignore it (posterior collapse). KL pulls it up later."""


class LSTMVariationalAutoencoder(LSTMAutoencoder):
    """The LSTM autoencoder's layers with a doubled code head (mu, logvar) and a log-variance read-out."""

    has_likelihood = True

    def __init__(self, shape: ModelShape) -> None:
        super().__init__(shape, code_width=2 * shape.latent)
        self.to_logvar = nn.Linear(shape.hidden, shape.n_features)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each (B, latent)."""
        mu, logvar = super().encode(x).chunk(2, dim=-1)
        return mu, logvar + POSTERIOR_LOGVAR_START

    def likelihood(self, code: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (bounded) log-variance of p(x | z), each (B, steps, F)."""
        states = self.decoder_states(code, steps)
        return self.to_features(states), self._logvar(states)

    def _logvar(self, states: torch.Tensor) -> torch.Tensor:
        return self.to_logvar(states).clamp(LOGVAR_MIN, LOGVAR_MAX)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, code: torch.Tensor, steps: int) -> torch.Tensor:
        return self.likelihood(code, steps)[0]

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, penalties: Penalties) -> torch.Tensor:
        mu, logvar = self.posterior(self.visible(inputs))
        code = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        states = self.decoder_states(code, inputs.shape[1])
        mean = self.to_features(states)
        reconstruction = nn.functional.mse_loss(mean, targets)
        out_logvar = self._logvar(states.detach())
        spread = 0.5 * (out_logvar + (targets - mean.detach()).square() * torch.exp(-out_logvar)).mean()
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(dim=-1).mean()
        loss = reconstruction + spread + penalties.kl_weight * kl / (targets.shape[1] * targets.shape[2])
        return loss + penalties.sparse * mu.abs().mean() if penalties.sparse else loss

    def pointwise_nll(self, x: torch.Tensor) -> torch.Tensor:
        """The negative log-likelihood of each value less its smallest possible value, so scores stay >= 0."""
        mean, logvar = self.likelihood(self.encode(self.visible(x)), x.shape[1])
        return 0.5 * ((x - mean).square() * torch.exp(-logvar) + logvar - LOGVAR_MIN)
