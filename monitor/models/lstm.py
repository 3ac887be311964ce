"""The LSTM autoencoder: the default model kind, a recurrent encoder-decoder over the window.

It learns to reconstruct healthy windows; a window it reconstructs badly is unlike the training data,
which is what the anomaly score measures.
"""

from __future__ import annotations

import torch
from torch import nn

from monitor.models.base import Autoencoder, ModelShape


class LSTMAutoencoder(Autoencoder):
    """Encoder LSTM → latent vector → decoder LSTM; input and output are (B, W, F), batch first.

    The decoder sees only the latent vector (repeated over the window), so everything it reconstructs
    has to pass through the `latent`-sized bottleneck: that is what stops it from learning the identity.
    `code_width` lets the VAE widen the code head (mean and log-variance) while the layers and their
    weight names stay those of this class.
    """

    def __init__(self, shape: ModelShape, code_width: int | None = None) -> None:
        super().__init__(shape)
        hidden = shape.hidden
        self.encoder = nn.LSTM(shape.n_features, hidden, num_layers=shape.layers, batch_first=True)
        self.to_latent = nn.Linear(hidden, code_width or shape.latent)
        self.from_latent = nn.Linear(shape.latent, hidden)
        self.decoder = nn.LSTM(hidden, hidden, num_layers=shape.layers, batch_first=True)
        self.to_features = nn.Linear(hidden, shape.n_features)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        _, (hidden_states, _) = self.encoder(x)
        return self.to_latent(hidden_states[-1])

    def decode(self, code: torch.Tensor, steps: int) -> torch.Tensor:
        return self.to_features(self.decoder_states(code, steps))

    def decoder_states(self, code: torch.Tensor, steps: int) -> torch.Tensor:
        """The decoder LSTM's (B, steps, hidden) outputs, before the linear read-out of the features."""
        seed = self.from_latent(code)
        decoded, _ = self.decoder(seed.unsqueeze(1).expand(-1, steps, -1))
        return decoded
