"""The 1-D convolutional autoencoder: strided convolutions down, transposed convolutions back up.

Convolutions share their weights along the window, so local shapes (a spike, a step, a burst) are
learned once wherever they occur, with fewer parameters than the dense kind. Each of the `layers`
convolutions halves the length (rounding up); a linear layer maps the last feature map to the `latent`
code, so the bottleneck is as narrow as the other kinds'.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from monitor.models.base import Autoencoder, ModelShape

KERNEL = 3


class ConvAutoencoder(Autoencoder):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__(shape)
        hidden = shape.hidden
        lengths = [shape.window]
        for _ in range(shape.layers):
            lengths.append((lengths[-1] + 1) // 2)
        channels = [shape.n_features] + [hidden] * shape.layers
        encoder: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(channels):
            encoder += [nn.Conv1d(n_in, n_out, KERNEL, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(hidden * lengths[-1], shape.latent))
        self.from_latent = nn.Linear(shape.latent, hidden * lengths[-1])
        decoder: list[nn.Module] = []
        for i in range(shape.layers, 0, -1):
            # A transposed convolution gives 2L - 1 steps; one more where the encoder halved an even length.
            extra = 1 - lengths[i - 1] % 2
            decoder.append(nn.ConvTranspose1d(hidden, channels[i - 1], KERNEL, 2, 1, output_padding=extra))
            decoder.append(nn.ReLU())
        self.decoder = nn.Sequential(*decoder[:-1])  # no activation on the output: values are unbounded
        self._bottom = (hidden, lengths[-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.transpose(1, 2))

    def decode(self, code: torch.Tensor, steps: int) -> torch.Tensor:
        # code.shape[0], not len(code): an ONNX export traces it as the dynamic batch size, not a constant
        seed = torch.relu(self.from_latent(code)).view(code.shape[0], *self._bottom)
        return self.decoder(seed).transpose(1, 2)
