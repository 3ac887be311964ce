"""The only home of torch: model kinds, the artifact format, the batched scorer, and training.

The rest of the package sees `TorchScorer` through the torch-free `monitor.scoring.Scorer` protocol.
"""

from monitor.models.artifact import LoadedModel, load_artifact, save_artifact
from monitor.models.metadata import ModelMetadata
from monitor.models.scorer import TorchScorer
from monitor.models.training import SeriesData, TrainOptions, train_model

__all__ = [
    "LoadedModel",
    "ModelMetadata",
    "SeriesData",
    "TorchScorer",
    "TrainOptions",
    "load_artifact",
    "save_artifact",
    "train_model",
]
