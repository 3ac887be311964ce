"""The registry of model kinds: the one place that maps a `kind` name (config, metadata) to a class.

Training builds a fresh model here and loading rebuilds the same shape before it fills in the weights,
so a kind added here is trainable and loadable at once.
"""

from __future__ import annotations

from torch import nn

from monitor.errors import ModelError
from monitor.models.lstm import LSTMAutoencoder

MODEL_KINDS: dict[str, type[nn.Module]] = {"lstm": LSTMAutoencoder}


def build_model(kind: str, n_features: int, hidden: int, latent: int, layers: int) -> nn.Module:
    """A freshly initialised model of `kind`; an unknown kind is a `ModelError` listing the known ones."""
    try:
        model_class = MODEL_KINDS[kind]
    except KeyError:
        raise ModelError(f"unknown model kind {kind!r} (known: {', '.join(sorted(MODEL_KINDS))})") from None
    return model_class(n_features, hidden, latent, layers)
