"""The metadata that travels with a model's weights: what it is, what it expects, how it was made.

It holds everything needed to rebuild the module and use it correctly (sizes, features, normalisation,
score reduction) plus what an operator asks about a model in production (version, data range, training
report, the validation scores that seed thresholds). Parsing checks every field, because a daemon must
refuse a broken artifact with a clear message instead of scoring garbage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.errors import ModelError
from monitor.models.base import ModelShape
from monitor.models.kinds import check_score_method
from monitor.models.normalisation import Normalisation
from monitor.models.seasons import PERIODS

FORMAT_VERSION = 1
MAX_VALIDATION_SCORES = 2000


@dataclass(frozen=True, eq=False)
class ModelMetadata:
    """The contents of metadata.json; `n_features` is derived from `features`."""

    kind: str
    version: str
    window: int
    features: tuple[str, ...]
    hidden: int
    latent: int
    layers: int
    score_tail: int
    normalisation: Normalisation
    data_range: Mapping[str, Any]
    training: Mapping[str, Any]
    validation_scores: tuple[float, ...]
    created_at: str
    score_method: str = "reconstruction"
    """How a window's per-feature errors are computed: squared reconstruction error, or (vae) `nll`."""
    calendar: tuple[str, ...] = ()
    """Periods whose phase is a model input (`monitor.models.seasons`), two columns each after the features."""
    hidden_steps: int = 0
    """Newest steps hidden from the encoder (`ModelShape.hidden_steps`); artifacts from before have none."""

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_inputs(self) -> int:
        """Columns the module takes: the features, then sin and cos of each calendar period."""
        return self.n_features + 2 * len(self.calendar)

    @property
    def shape(self) -> ModelShape:
        return ModelShape(self.window, self.n_inputs, self.hidden, self.latent, self.layers, self.hidden_steps)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of metadata.json."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "version": self.version,
            "window": self.window,
            "n_features": self.n_features,
            "features": list(self.features),
            "hidden": self.hidden,
            "latent": self.latent,
            "layers": self.layers,
            "score_tail": self.score_tail,
            "score_method": self.score_method,
            "calendar": list(self.calendar),
            "hidden_steps": self.hidden_steps,
            "normalisation": self.normalisation.to_dict(),
            "data_range": dict(self.data_range),
            "training": dict(self.training),
            "validation_scores": list(self.validation_scores),
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ModelMetadata:
        """Parse metadata.json; a wrong format version, missing key or bad value is a `ModelError`."""
        if not isinstance(data, dict):
            raise ModelError("metadata must be a JSON object")
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"format_version must be {FORMAT_VERSION}, got {data.get('format_version')!r}")
        features = _features(data)
        kind = _field(data, "kind", str)
        window = _count(data, "window", minimum=1)
        # Artifacts written before score methods existed scored the reconstruction error.
        score_method = data.get("score_method", "reconstruction")
        check_score_method(kind, score_method)
        return cls(
            kind=kind,
            version=_field(data, "version", str),
            window=window,
            features=features,
            hidden=_count(data, "hidden", minimum=1),
            latent=_count(data, "latent", minimum=1),
            layers=_count(data, "layers", minimum=1),
            score_tail=_count(data, "score_tail", minimum=0),
            normalisation=Normalisation.from_dict(data.get("normalisation"), len(features)),
            data_range=_field(data, "data_range", dict),
            training=_field(data, "training", dict),
            validation_scores=_scores(data),
            created_at=_field(data, "created_at", str),
            score_method=score_method,
            calendar=_calendar(data),
            hidden_steps=_hidden_steps(data, window),
        )


def model_version(kind: str, weights: bytes, created: datetime) -> str:
    """`<kind>-<UTC yyyymmdd>-<first 6 hex of sha256(weights)>`: readable, and unique per weights."""
    return f"{kind}-{created:%Y%m%d}-{hashlib.sha256(weights).hexdigest()[:6]}"


def _calendar(data: dict[str, Any]) -> tuple[str, ...]:
    """Artifacts written before calendar inputs existed have none."""
    periods = data.get("calendar", [])
    if not isinstance(periods, list) or any(p not in PERIODS for p in periods) or len(set(periods)) != len(periods):
        raise ModelError(f"calendar must be a list of distinct periods from {sorted(PERIODS)}, got {periods!r}")
    return tuple(periods)


def _hidden_steps(data: dict[str, Any], window: int) -> int:
    """Artifacts written before `model.hide_scored` existed hide nothing."""
    steps = data.get("hidden_steps", 0)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps < window:
        raise ModelError(f"hidden_steps must be an integer from 0 to window - 1 ({window - 1}), got {steps!r}")
    return steps


def _field(data: dict[str, Any], key: str, expected: type) -> Any:
    if key not in data:
        raise ModelError(f"missing key {key!r}")
    if not isinstance(data[key], expected):
        raise ModelError(f"{key} must be of type {expected.__name__}, got {data[key]!r}")
    return data[key]


def _count(data: dict[str, Any], key: str, minimum: int) -> int:
    value = _field(data, key, int)
    if isinstance(value, bool) or value < minimum:
        raise ModelError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _features(data: dict[str, Any]) -> tuple[str, ...]:
    features = _field(data, "features", list)
    if not features or not all(isinstance(name, str) for name in features):
        raise ModelError(f"features must be a non-empty list of names, got {features!r}")
    n_features = _count(data, "n_features", minimum=1)
    if n_features != len(features):
        raise ModelError(f"n_features is {n_features} but features lists {len(features)} names")
    return tuple(features)


def _scores(data: dict[str, Any]) -> tuple[float, ...]:
    scores = _field(data, "validation_scores", list)
    if not all(isinstance(s, int | float) and not isinstance(s, bool) for s in scores):
        raise ModelError("validation_scores must be a list of numbers")
    return tuple(float(s) for s in scores)
