"""The registry of model kinds: the one place that maps a `kind` name (config, metadata) to a class.

Training builds a fresh model here and loading rebuilds the same shape before it fills in the weights,
so a kind added here is trainable, loadable and servable at once. `monitor.config.MODEL_KINDS` repeats
the names (the config may not import torch); a unit test keeps the two lists equal.
"""

from __future__ import annotations

from monitor.errors import ModelError
from monitor.models.base import Autoencoder, ModelShape
from monitor.models.conv import ConvAutoencoder
from monitor.models.dense import DenseAutoencoder
from monitor.models.lstm import LSTMAutoencoder
from monitor.models.vae import LSTMVariationalAutoencoder

MODEL_KINDS: dict[str, type[Autoencoder]] = {
    "lstm": LSTMAutoencoder,
    "dense": DenseAutoencoder,
    "conv": ConvAutoencoder,
    "vae": LSTMVariationalAutoencoder,
}
SCORE_METHODS = ("reconstruction", "nll")


def model_class(kind: str) -> type[Autoencoder]:
    """The class of `kind`; an unknown kind is a `ModelError` listing the known ones."""
    try:
        return MODEL_KINDS[kind]
    except KeyError:
        raise ModelError(f"unknown model kind {kind!r} (known: {', '.join(sorted(MODEL_KINDS))})") from None


def build_model(kind: str, shape: ModelShape) -> Autoencoder:
    """A freshly initialised model of `kind`."""
    return model_class(kind)(shape)


def check_score_method(kind: str, method: str) -> None:
    """`nll` needs a kind with a likelihood; anything else than the known methods is refused."""
    if method not in SCORE_METHODS:
        raise ModelError(f"unknown score method {method!r} (known: {', '.join(SCORE_METHODS)})")
    if method == "nll" and not model_class(kind).has_likelihood:
        have = sorted(name for name, cls in MODEL_KINDS.items() if cls.has_likelihood)
        raise ModelError(f"score method 'nll' needs a model kind with a likelihood ({', '.join(have)}), not {kind!r}")
