"""The only home of torch: model kinds, the artifact format and store, the batched scorer, and training.

The rest of the package sees `TorchScorer` through the torch-free `monitor.engine.scoring.Scorer` protocol.
"""

from monitor.models.artifact import LoadedModel, load_artifact, save_artifact
from monitor.models.base import Autoencoder, ModelShape, Penalties
from monitor.models.kinds import MODEL_KINDS, build_model
from monitor.models.metadata import ModelMetadata
from monitor.models.scorer import TorchScorer
from monitor.models.training import SeriesData, TrainOptions, train_model

__all__ = [
    "MODEL_KINDS",
    "Autoencoder",
    "LoadedModel",
    "ModelMetadata",
    "ModelShape",
    "Penalties",
    "SeriesData",
    "TorchScorer",
    "TrainOptions",
    "build_model",
    "load_artifact",
    "save_artifact",
    "train_model",
]
