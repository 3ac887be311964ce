"""Per-series normalisation: learned with the model, shipped in its artifact, applied before every pass.

Series differ in level and scale by orders of magnitude, and the model only knows "normal" in units of
each series' own spread. Series not seen in training fall back to the statistics pooled over all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.errors import ModelError

STD_FLOOR_RELATIVE = 1e-3
"""A constant series has std 0; its std is raised to this fraction of the pooled scale of the feature,
so a small wobble scores high (it is unusual) without dividing by zero."""
STD_FLOOR_ABSOLUTE = 1e-8
"""The floor when the pooled data itself is all zeros."""


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Mean and standard deviation per feature, shape (F,) each."""

    mean: np.ndarray
    std: np.ndarray


class Normalisation:
    """The default (pooled) statistics plus one `FeatureStats` per training series."""

    def __init__(self, default: FeatureStats, series: Mapping[str, FeatureStats]) -> None:
        pooled_scale = np.maximum(np.abs(default.mean), default.std)
        self.floor = np.maximum(STD_FLOOR_RELATIVE * pooled_scale, STD_FLOOR_ABSOLUTE)
        """The smallest std per feature (also for statistics learned online)."""
        self.default = _floored(default, self.floor)
        self.series = {name: _floored(stats, self.floor) for name, stats in series.items()}
        self._row = {name: i for i, name in enumerate(self.series)}
        """Each training series' row in `_means` and `_stds`; their last row is the default's."""
        self._means = np.stack([*(stats.mean for stats in self.series.values()), self.default.mean])
        self._stds = np.stack([*(stats.std for stats in self.series.values()), self.default.std])

    @classmethod
    def fit(cls, values: Mapping[str, np.ndarray]) -> Normalisation:
        """Statistics of each series' (T, F) values and of all of them pooled; NaNs are ignored."""
        pooled = np.concatenate(list(values.values()))
        return cls(_stats(pooled), {name: _stats(rows) for name, rows in values.items()})

    def extended(self, other: Normalisation) -> Normalisation:
        """These statistics, plus `other`'s for the series these do not know (a model fine-tuned on new
        data reads its series in their units now, and the other series it knew as before)."""
        return Normalisation(self.default, {**other.series, **self.series})

    def rows(self, series: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(B, F) means and stds (new arrays) for a batch whose row i belongs to `series[i]`: one dict lookup
        per row and one gather, as this runs for every scored batch."""
        rows = [self._row.get(name, -1) for name in series]
        return self._means[rows], self._stds[rows]

    def apply(self, series: Sequence[str], batch: np.ndarray) -> np.ndarray:
        """The (B, W, F) raw `batch` in normalised units, as float32 for the model."""
        return normalise(batch, *self.rows(series))

    def to_dict(self) -> dict[str, Any]:
        """The `normalisation` object of metadata.json."""
        return {
            "default": _stats_to_dict(self.default),
            "series": {name: _stats_to_dict(stats) for name, stats in self.series.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, n_features: int) -> Normalisation:
        """Parse and check the metadata.json object; anything malformed is a `ModelError` saying where."""
        if not isinstance(data, dict) or not isinstance(data.get("series"), dict):
            raise ModelError("normalisation must be an object with 'default' and 'series' objects")
        default = _parse_stats(data.get("default"), "normalisation.default", n_features)
        series = {
            name: _parse_stats(stats, f"normalisation.series[{name!r}]", n_features)
            for name, stats in data["series"].items()
        }
        return cls(default, series)


def normalise(batch: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """(B, W, F) raw windows in units of their rows' (B, F) statistics, as float32 for the model."""
    return ((batch - means[:, None, :]) / stds[:, None, :]).astype(np.float32)


def _stats(values: np.ndarray) -> FeatureStats:
    return FeatureStats(np.nanmean(values, axis=0), np.nanstd(values, axis=0))


def _floored(stats: FeatureStats, floor: np.ndarray) -> FeatureStats:
    return FeatureStats(np.asarray(stats.mean, np.float64), np.maximum(stats.std, floor).astype(np.float64))


def _stats_to_dict(stats: FeatureStats) -> dict[str, list[float]]:
    return {"mean": stats.mean.tolist(), "std": stats.std.tolist()}


def _parse_stats(data: Any, where: str, n_features: int) -> FeatureStats:
    if not isinstance(data, dict):
        raise ModelError(f"{where} must be an object with 'mean' and 'std'")
    mean = _parse_vector(data.get("mean"), f"{where}.mean", n_features)
    std = _parse_vector(data.get("std"), f"{where}.std", n_features)
    if (std < 0).any():
        raise ModelError(f"{where}.std has a negative value: {std.tolist()}")
    return FeatureStats(mean, std)


def _parse_vector(data: Any, where: str, n_features: int) -> np.ndarray:
    if not isinstance(data, list) or len(data) != n_features:
        raise ModelError(f"{where} must be a list of {n_features} numbers, got {data!r}")
    try:
        vector = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"{where} must contain numbers only, got {data!r}") from None
    if not np.isfinite(vector).all():
        raise ModelError(f"{where} must be finite, got {data!r}")
    return vector
