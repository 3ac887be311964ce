"""The standard, fully connected autoencoder over the flattened window.

It ignores the order of the steps (every value is one input), which makes it the fastest kind and a good
baseline; it suits short windows whose shape matters more than their dynamics. Widths halve layer by
layer from `hidden` down to the `latent` bottleneck and mirror back up: hidden=128, layers=2, latent=32
is the article's 128-64-32 example.
"""

from __future__ import annotations

import torch
from torch import nn

from monitor.models.base import Autoencoder, ModelShape


class DenseAutoencoder(Autoencoder):
    def __init__(self, shape: ModelShape) -> None:
        super().__init__(shape)
        widths = [max(shape.hidden >> i, 1) for i in range(shape.layers)]
        flat = shape.window * shape.n_features
        encoder: list[nn.Module] = []
        for n_in, n_out in zip([flat, *widths], widths, strict=False):
            encoder += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder, nn.Linear(widths[-1], shape.latent))
        decoder: list[nn.Module] = []
        for n_in, n_out in zip([shape.latent, *widths[::-1]], widths[::-1], strict=False):
            decoder += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.decoder = nn.Sequential(*decoder, nn.Linear(widths[0], flat))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, code: torch.Tensor, steps: int) -> torch.Tensor:
        # code.shape[0], not len(code): an ONNX export traces it as the dynamic batch size, not a constant
        return self.decoder(code).view(code.shape[0], steps, self.shape.n_features)
