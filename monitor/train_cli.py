"""`monitor train`: gather healthy data (file or Kafka time range), fit the detector's model, save it."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from monitor.config import Config, DetectorConfig
from monitor.datasets import SeriesArrays, decode_messages, group_series, read_points
from monitor.errors import InputError

log = logging.getLogger(__name__)


def train(config: Config, args: argparse.Namespace) -> Path:
    from monitor.models import SeriesData, save_artifact, train_model

    detector = config.detector(args.detector) if args.detector else config.detectors[0]
    data = _load(config, detector, args)
    points = sum(len(ts) for ts, _ in data.values())
    log.info("training %s on %d series, %d points", detector.settings.name, len(data), points)
    options = _options(detector, args)
    series = {name: SeriesData(ts, values) for name, (ts, values) in data.items()}
    model, metadata = train_model(series, detector.settings.features, options, progress=not args.no_progress)
    out = Path(args.out) if args.out else detector.model.path
    save_artifact(model, metadata, out)
    t = metadata.training
    print(
        f"saved {metadata.version} to {out}: epochs {t.get('epochs_run')}, "
        f"validation loss {t.get('val_loss', float('nan')):.5f}"
    )
    return out


def _load(config: Config, detector: DetectorConfig, args: argparse.Namespace) -> SeriesArrays:
    start, end = args.start, args.end
    if args.input:
        points = read_points(args.input)
    else:
        from monitor.kafka_io import read_range

        if args.start is None or args.end is None:
            raise InputError("--topic needs --start and --end (the healthy time range to train on)")
        points = decode_messages(read_range(config.kafka, args.topic, args.start, args.end))
        start = end = None  # the range applied to record timestamps already
    selected = (p for p in points if _selects(detector, p.series))
    data = group_series(selected, detector.settings.features, start, end, args.exclude)
    if not data:
        raise InputError(f"no points for detector {detector.settings.name!r} in the given input and range")
    return data


def _selects(detector: DetectorConfig, series: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(series, detector.settings.series)


def _options(detector: DetectorConfig, args: argparse.Namespace):
    from monitor.models import TrainOptions

    m, t = detector.model, detector.training
    options = TrainOptions(
        kind=m.kind,
        window=detector.settings.window,
        hidden=m.hidden,
        latent=m.latent,
        layers=m.layers,
        score_tail=m.score_tail,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        validation_split=t.validation_split,
        patience=t.patience,
        max_windows=t.max_windows,
        seed=t.seed,
        device=args.device,
    )
    return replace(options, epochs=args.epochs) if args.epochs else options
