"""The LSTM autoencoder: the default model kind.

It learns to reconstruct healthy windows; a window it reconstructs badly is unlike the training data,
which is what the anomaly score measures.
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMAutoencoder(nn.Module):
    """Encoder LSTM → latent vector → decoder LSTM; input and output are (B, W, F), batch first.

    The decoder sees only the latent vector (repeated over the window), so everything it reconstructs
    has to pass through the `latent`-sized bottleneck: that is what stops it from learning the identity.
    """

    def __init__(self, n_features: int, hidden: int, latent: int, layers: int = 1) -> None:
        super().__init__()
        self.encoder = nn.LSTM(n_features, hidden, num_layers=layers, batch_first=True)
        self.to_latent = nn.Linear(hidden, latent)
        self.from_latent = nn.Linear(latent, hidden)
        self.decoder = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.to_features = nn.Linear(hidden, n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (hidden_states, _) = self.encoder(x)
        latent = self.to_latent(hidden_states[-1])
        seed = self.from_latent(latent)
        decoder_input = seed.unsqueeze(1).expand(-1, x.shape[1], -1)
        decoded, _ = self.decoder(decoder_input)
        return self.to_features(decoded)
