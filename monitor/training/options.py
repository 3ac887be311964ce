"""A detector's configured training options as `TrainOptions`: one translation for `monitor train`, scheduled
retraining and `monitor evaluate`, so the three train the same model from the same config."""

from __future__ import annotations

import dataclasses
from typing import Any

from monitor.config import DetectorConfig


def training_options(detector: DetectorConfig, **overrides: Any) -> Any:
    """The `TrainOptions` a detector's config describes, with `overrides` (names of TrainOptions fields)."""
    from monitor.models import TrainOptions

    m, t = detector.model, detector.training
    options = TrainOptions(
        kind=m.kind,
        window=detector.settings.window,
        hidden=m.hidden,
        latent=m.latent,
        layers=m.layers,
        score_tail=m.score_tail,
        score_method=m.score,
        calendar=m.calendar,
        hide_scored=m.hide_scored,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        validation_split=t.validation_split,
        patience=t.patience,
        max_windows=t.max_windows,
        seed=t.seed,
        denoising=t.denoising,
        noise=t.noise,
        sparse=t.sparse,
        kl_weight=t.kl_weight,
        ema=t.ema,
    )
    return dataclasses.replace(options, **overrides)
