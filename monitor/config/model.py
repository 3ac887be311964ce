"""The `model`, `training` and `retraining` sections of a detector in config.yaml, checked like the rest.

Kept out of `monitor.config` so the model options grow without crowding the service settings. No torch:
`MODEL_KINDS` repeats the registry's names and a unit test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from monitor.config.reader import Invalid, Section, show

MODEL_KINDS = ("lstm", "dense", "conv", "vae")
SCORE_METHODS = ("reconstruction", "nll")
LIKELIHOOD_KINDS = ("vae",)
DENOISING = ("none", "gaussian", "mask")
CALENDAR = ("auto", "none", "day", "week", "day+week")


@dataclass(frozen=True, slots=True)
class ModelSettings:
    path: Path = Path("models/default")
    """A model store (versions plus CURRENT, what `monitor train` writes) or a single artifact directory."""
    kind: str = "lstm"
    hidden: int = 32
    latent: int = 16
    layers: int = 1
    score_tail: int = 1
    score: str = "reconstruction"
    """`nll` scores a vae's windows by negative log-likelihood instead of reconstruction error."""
    hide_scored: bool = True
    """The encoder does not see the `score_tail` scored steps (`monitor.models.base.Autoencoder.visible`):
    the model predicts them from the rest of the window, so it cannot copy their noise. Off by default
    where there is nothing to hide (`score_tail` 0: the whole window is scored)."""
    online_warmup: int = 256
    """Windows over which a series unseen in training learns its own normalisation; 0: pooled statistics."""
    calendar: str = "auto"
    """Time-of-day / day-of-week model inputs (`monitor.models.seasons`); `auto` decides at training."""
    reload_interval: float = 5.0
    """Seconds between checks of `path` for a new version; 0 reloads on SIGHUP only."""


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 3e-3
    validation_split: float = 0.2
    patience: int = 20
    max_windows: int = 20_000
    seed: int = 0
    denoising: str = "none"
    noise: float = 0.1
    sparse: float = 0.0
    kl_weight: float = 0.1
    ema: float = 0.98


@dataclass(frozen=True, slots=True)
class RetrainingSettings:
    """Scheduled retraining inside the daemon on recent windows that were not flagged anomalous."""

    every: float = 0.0
    """Seconds between retrainings; 0 (the default) turns it off."""
    history: int = 2000
    """Recent normal points kept per series for it (memory: 8 bytes × features × history × max_series)."""
    max_series: int = 64
    """Series sampled for it (the first ones seen); the others are still scored, not retrained on."""
    epochs: int = 10


def parse_model(s: Section, base_dir: Path, window: int) -> ModelSettings:
    d = ModelSettings()
    path = Path(s.text("path", str(d.path)))
    kind = s.text("kind", d.kind, MODEL_KINDS)
    score_tail = s.integer("score_tail", d.score_tail, 0, window)
    m = ModelSettings(
        path=path if path.is_absolute() else base_dir / path,
        kind=kind,
        hidden=s.integer("hidden", d.hidden, 1, 4096),
        latent=s.integer("latent", d.latent, 1, 4096),
        layers=s.integer("layers", d.layers, 1, 8),
        score_tail=score_tail,
        score=s.text("score", d.score, SCORE_METHODS),
        hide_scored=s.flag("hide_scored", d.hide_scored and 0 < score_tail < window),
        online_warmup=s.integer("online_warmup", d.online_warmup, 0, 100_000),
        calendar=s.text("calendar", d.calendar, CALENDAR),
        reload_interval=s.number("reload_interval", d.reload_interval, 0.0, 86_400.0),
    )
    if m.hide_scored and not 0 < m.score_tail < window:
        raise Invalid(
            f"{s.path_of('hide_scored')}: needs a score_tail from 1 to window - 1 ({window - 1}), got "
            f"{m.score_tail}: there is no scored part of the window to hide"
        )
    if m.score == "nll" and kind not in LIKELIHOOD_KINDS:
        raise Invalid(f"{s.path_of('score')}: nll needs a kind with a likelihood ({', '.join(LIKELIHOOD_KINDS)})")
    s.done()
    return m


def parse_training(s: Section) -> TrainingSettings:
    d = TrainingSettings()
    t = TrainingSettings(
        epochs=s.integer("epochs", d.epochs, 1),
        batch_size=s.integer("batch_size", d.batch_size, 1),
        learning_rate=s.number("learning_rate", d.learning_rate, 1e-7, 1.0),
        validation_split=s.number("validation_split", d.validation_split, 0.05, 0.5),
        patience=s.integer("patience", d.patience, 1),
        max_windows=s.integer("max_windows", d.max_windows, 16),
        seed=s.integer("seed", d.seed, 0),
        denoising=s.text("denoising", d.denoising, DENOISING),
        noise=s.number("noise", d.noise, 1e-6, 10.0),
        sparse=s.number("sparse", d.sparse, 0.0, 100.0),
        kl_weight=s.number("kl_weight", d.kl_weight, 0.0, 100.0),
        ema=s.number("ema", d.ema, 0.0, 0.9999),
    )
    if t.denoising == "mask" and t.noise >= 1:
        raise Invalid(f"{s.path_of('noise')}: the masking probability must be below 1, got {show(t.noise)}")
    s.done()
    return t


def parse_retraining(s: Section) -> RetrainingSettings:
    d = RetrainingSettings()
    r = RetrainingSettings(
        every=s.number("every", d.every, 0.0),
        history=s.integer("history", d.history, 16, 1_000_000),
        max_series=s.integer("max_series", d.max_series, 1, 100_000),
        epochs=s.integer("epochs", d.epochs, 1, 1000),
    )
    if r.every and r.every < 60:
        raise Invalid(f"{s.path_of('every')}: must be 0 (off) or at least 60 seconds, got {show(r.every)}")
    s.done()
    return r


def parse_labels(s: Section, key: str) -> tuple[tuple[str, str], ...]:
    """A mapping of label name → exact value, as sorted pairs (hashable, order-free)."""
    value = s.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Invalid(f"{s.path_of(key)}: must be a mapping of label names to strings, got {show(value)}")
    return tuple(sorted(value.items()))
