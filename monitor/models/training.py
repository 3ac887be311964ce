"""Training a model from historical series: data preparation, the fit, and the metadata to ship with it.

Windows are cut and normalised with the same helpers the scorer uses, split chronologically per series
(the validation part is each series' most recent stretch, like the data the model will score next), and
the validation scores are computed with the scorer's own reduction so they can seed live thresholds.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
from torch import nn

from monitor.errors import ModelError
from monitor.models.artifact import LoadedModel, weights_bytes
from monitor.models.base import ModelShape, Penalties
from monitor.models.fitting import DENOISING, FitReport, FitSettings, fit
from monitor.models.inference import reconstruction_scores
from monitor.models.kinds import build_model, check_score_method
from monitor.models.metadata import MAX_VALIDATION_SCORES, ModelMetadata, model_version
from monitor.models.normalisation import Normalisation
from monitor.models.seasons import SETTINGS as CALENDAR_SETTINGS
from monitor.models.seasons import choose, with_calendar
from monitor.models.windowing import sliding_windows, subsample_evenly


@dataclass(frozen=True, slots=True)
class SeriesData:
    """The history of one series: timestamps (T,) in Unix seconds and values (T, F) in feature order."""

    ts: np.ndarray
    values: np.ndarray


@dataclass(frozen=True, slots=True)
class _Windows:
    """One series' training windows (N, window, F) and the first and last timestamp (N,) of each."""

    values: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """Model sizes and training settings; `max_windows` caps training (and validation) windows."""

    kind: str = "lstm"
    window: int = 64
    hidden: int = 32
    latent: int = 16
    layers: int = 1
    score_tail: int = 0
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    validation_split: float = 0.2
    patience: int = 4
    train_stride: int = 1
    max_windows: int = 20000
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    score_method: str = "reconstruction"
    """What a window's score is: its reconstruction error, or (vae) its negative log-likelihood, `nll`."""
    denoising: str = "none"
    """Train on corrupted inputs to reconstruct the clean window: none, gaussian, or mask."""
    noise: float = 0.1
    """Gaussian noise sd (normalised units) or masking probability of `denoising`."""
    sparse: float = 0.0
    """Weight of the L1 penalty on the latent activations; 0 is off."""
    kl_weight: float = 0.1
    """Weight of the KL term of the vae; short series with weight 1 tend to posterior collapse."""
    ema: float = 0.0
    """Decay per step of the averaged weights that are validated and kept (0: off)."""
    calendar: str = "none"
    """Time-of-day / day-of-week inputs (`monitor.models.seasons`): auto, none, day, week or day+week."""
    hide_scored: bool = False
    """Hide the `score_tail` scored steps from the encoder (`Autoencoder.visible`): the model predicts them."""

    @property
    def hidden_steps(self) -> int:
        return self.score_tail if self.hide_scored else 0

    def __post_init__(self) -> None:
        check_score_method(self.kind, self.score_method)
        rules = {
            "window >= 2": self.window >= 2,
            "hidden, latent, layers >= 1": min(self.hidden, self.latent, self.layers) >= 1,
            "score_tail >= 0": self.score_tail >= 0,
            "epochs, batch_size, patience, train_stride, threads >= 1": min(
                self.epochs, self.batch_size, self.patience, self.train_stride, self.threads
            )
            >= 1,
            "learning_rate > 0": self.learning_rate > 0,
            "0 < validation_split < 1": 0 < self.validation_split < 1,
            "max_windows >= 1": self.max_windows >= 1,
            f"denoising in {DENOISING}": self.denoising in DENOISING,
            "0 < noise < 1 with denoising mask": self.denoising != "mask" or 0 < self.noise < 1,
            "noise > 0": self.noise > 0,
            "sparse, kl_weight >= 0": min(self.sparse, self.kl_weight) >= 0,
            f"calendar in {CALENDAR_SETTINGS}": self.calendar in CALENDAR_SETTINGS,
            "0 < score_tail < window with hide_scored": not self.hide_scored or 0 < self.score_tail < self.window,
        }
        broken = [rule for rule, holds in rules.items() if not holds]
        if broken:
            raise ModelError(f"invalid training options, need {'; '.join(broken)}: {self}")


def train_model(
    data: Mapping[str, SeriesData],
    features: Sequence[str],
    options: TrainOptions,
    progress: bool = True,
    start: LoadedModel | None = None,
) -> tuple[nn.Module, ModelMetadata]:
    """Fit a model of `options.kind` to `data` and describe it; the module comes back in eval mode on CPU.

    With `start`, training continues from that model instead of from random weights (scheduled
    retraining fine-tunes the serving model). Its calendar inputs are kept; the series in `data` get
    their statistics from it, so a level that moved for good is read in its new units, and the other
    series `start` knew keep theirs. Its kind and sizes must be those of `options`.

    Series shorter than the window are skipped; no usable window at all, or none left for validation,
    is a `ModelError`.
    """
    started = time.monotonic()
    series = _checked_series(data, len(features))
    windows = _finite_windows(series, options)
    normalisation = Normalisation.fit({name: series[name].values for name in windows})
    if start is None:
        periods = choose(options.calendar, {name: (series[name].ts, series[name].values) for name in windows})
    else:
        _check_start(start.metadata, features, options)
        normalisation, periods = normalisation.extended(start.metadata.normalisation), start.metadata.calendar
    train, validation = _split(windows, normalisation, options, periods)
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    inputs = len(features) + 2 * len(periods)
    shape = ModelShape(options.window, inputs, options.hidden, options.latent, options.layers, options.hidden_steps)
    model = build_model(options.kind, shape)
    if start is not None:
        model.load_state_dict(start.module.state_dict())
    report = fit(model, train, validation, _fit_settings(options), progress)
    model = model.cpu().eval()
    method = options.score_method
    scores = reconstruction_scores(model, validation, options.score_tail, method=method, features=len(features)).scores
    created = datetime.now(UTC)
    metadata = ModelMetadata(
        kind=options.kind,
        version=model_version(options.kind, weights_bytes(model), created),
        window=options.window,
        features=tuple(features),
        hidden=options.hidden,
        latent=options.latent,
        layers=options.layers,
        score_tail=options.score_tail,
        normalisation=normalisation,
        data_range=_data_range({name: series[name] for name in windows}),
        training=_training_report(report, options, len(train), len(validation), time.monotonic() - started),
        validation_scores=tuple(subsample_evenly(scores, MAX_VALIDATION_SCORES).tolist()),
        created_at=created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        score_method=method,
        calendar=periods,
        hidden_steps=options.hidden_steps,
    )
    return model, metadata


def _check_start(metadata: ModelMetadata, features: Sequence[str], options: TrainOptions) -> None:
    """A model to continue from must have the kind, sizes and features that training is asked for."""
    pairs = {
        "kind": (options.kind, metadata.kind),
        "window": (options.window, metadata.window),
        "hidden": (options.hidden, metadata.hidden),
        "latent": (options.latent, metadata.latent),
        "layers": (options.layers, metadata.layers),
        "score_tail": (options.score_tail, metadata.score_tail),
        "hidden steps": (options.hidden_steps, metadata.hidden_steps),
        "features": (tuple(features), metadata.features),
    }
    differ = [f"{name} {asked!r} (it has {has!r})" for name, (asked, has) in pairs.items() if asked != has]
    if differ:
        raise ModelError(f"cannot continue training model {metadata.version}: asked for {'; '.join(differ)}")


def _checked_series(data: Mapping[str, SeriesData], n_features: int) -> dict[str, SeriesData]:
    """Every series as float64 in time order; a shape that does not fit the features is a `ModelError`."""
    if n_features == 0:
        raise ModelError("no features to train on")
    checked = {}
    for name, item in data.items():
        ts, values = np.asarray(item.ts, np.float64), np.asarray(item.values, np.float64)
        if values.ndim != 2 or values.shape[1] != n_features or ts.shape != (len(values),):
            raise ModelError(
                f"series {name!r}: need ts (T,) and values (T, {n_features}), got {ts.shape} and {values.shape}"
            )
        order = np.argsort(ts, kind="stable")
        checked[name] = SeriesData(ts[order], values[order])
    return checked


def _finite_windows(series: Mapping[str, SeriesData], options: TrainOptions) -> dict[str, _Windows]:
    """Raw windows without NaN/inf per series that has any; none anywhere is a `ModelError`."""
    windows = {}
    for name, item in series.items():
        cut = sliding_windows(item.values, options.window, options.train_stride)
        starts = item.ts[: len(cut) * options.train_stride : options.train_stride]
        ends = item.ts[options.window - 1 :][:: options.train_stride][: len(cut)]
        finite = np.isfinite(cut).all(axis=(1, 2))
        if finite.any():
            windows[name] = _Windows(cut[finite], starts[finite], ends[finite])
    if not windows:
        longest = max((len(item.values) for item in series.values()), default=0)
        raise ModelError(
            f"not enough data to train: no series has {options.window} consecutive finite points "
            f"(window={options.window}; longest series: {longest} points in {len(series)} series)"
        )
    return windows


def _split(
    windows: Mapping[str, _Windows], normalisation: Normalisation, options: TrainOptions, periods: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised training and validation windows (with their calendar columns): the last
    `validation_split` of each series validates."""
    train_parts, validation_parts = [], []
    for name, cut in windows.items():
        raw = cut.values
        normalised = with_calendar(normalisation.apply([name] * len(raw), raw), cut.starts, cut.ends, periods)
        n_validation = min(len(raw) - 1, round(len(raw) * options.validation_split))
        train_parts.append(normalised[: len(raw) - n_validation])
        validation_parts.append(normalised[len(raw) - n_validation :])
    train = subsample_evenly(np.concatenate(train_parts), options.max_windows)
    validation = subsample_evenly(np.concatenate(validation_parts), options.max_windows)
    if len(validation) == 0:
        raise ModelError(
            f"not enough data to validate: {len(train)} windows in total, none left for validation "
            f"(validation_split={options.validation_split}); provide longer series"
        )
    return train, validation


def _fit_settings(options: TrainOptions) -> FitSettings:
    return FitSettings(
        epochs=options.epochs,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        patience=options.patience,
        seed=options.seed,
        device=options.device,
        denoising=options.denoising,
        noise=options.noise,
        penalties=Penalties(sparse=options.sparse, kl_weight=options.kl_weight),
        ema=options.ema,
    )


def _data_range(series: Mapping[str, SeriesData]) -> dict[str, Any]:
    return {
        "start": min(float(item.ts[0]) for item in series.values()),
        "end": max(float(item.ts[-1]) for item in series.values()),
        "points": sum(len(item.ts) for item in series.values()),
        "series": len(series),
    }


def _training_report(
    report: FitReport, options: TrainOptions, n_train: int, n_validation: int, seconds: float
) -> dict[str, Any]:
    return {
        **dataclasses.asdict(report),
        "seed": options.seed,
        "train_windows": n_train,
        "validation_windows": n_validation,
        "seconds": round(seconds, 3),
        "options": dataclasses.asdict(options),
    }
