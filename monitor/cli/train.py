"""`monitor train`: fit a detector's model on healthy data and publish it as a new version.

Training data comes from a file (CSV or JSON lines) or a Kafka time range, selected and joined into
entities exactly as the daemon does. The command line may override the configured kind and training
options; the result is a new version in the detector's model store with its training report, and
`CURRENT` moves to it, which a running daemon picks up (see `monitor.service.reload`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from monitor.config import Config, DetectorConfig, load_config
from monitor.config.model import CALENDAR, DENOISING, MODEL_KINDS, SCORE_METHODS
from monitor.engine.entities import EntityAssembler, Selector
from monitor.errors import InputError
from monitor.formats import decoder
from monitor.records import Point, format_ts, parse_time
from monitor.training.datasets import SeriesArrays, decode_messages, group_series, read_points
from monitor.training.options import training_options

log = logging.getLogger(__name__)

SPARSE_WEIGHT = 1e-3
"""The L1 weight `--sparse` uses when it is given without one."""


SELECT_BY = ("point", "record")
"""What --start/--end of a topic select by: the point's own time, or the Kafka record's timestamp."""

HELP = "train a detector's model on healthy data and publish a new version"


def add_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("--detector", default=None, help="detector name (default: the first)")
    src = train.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", metavar="FILE", help="CSV (timestamp,value[,series]) or JSON-lines points")
    src.add_argument("--topic", help="read the training range from this Kafka topic")
    train.add_argument(
        "--start",
        type=parse_time,
        help="first time to use (Unix seconds or RFC 3339): the point's own time (ts), see --select-by",
    )
    train.add_argument("--end", type=parse_time, help="end of the range, exclusive, in the same time as --start")
    train.add_argument(
        "--select-by",
        choices=SELECT_BY,
        default="point",
        help="with --topic: point (default) keeps points whose own time (ts) is in --start/--end, reading the "
        "whole topic, as a replay of old data needs; record selects Kafka records by their timestamp through "
        "the broker's time index, reading only that range (points without ts use the record's time either way)",
    )
    train.add_argument(
        "--exclude",
        type=_time_range,
        action="append",
        default=[],
        metavar="START/END",
        help="leave out a time range (a known incident); repeatable",
    )
    train.add_argument("--out", help="model store to publish to (default: the detector's model.path)")
    train.add_argument("--kind", choices=MODEL_KINDS, help="override model.kind")
    train.add_argument("--score", choices=SCORE_METHODS, help="override model.score (nll: vae only)")
    train.add_argument("--hidden", type=int, help="override model.hidden")
    train.add_argument("--latent", type=int, help="override model.latent")
    train.add_argument("--layers", type=int, help="override model.layers")
    train.add_argument("--calendar", choices=CALENDAR, help="override model.calendar (time-of-day/week inputs)")
    train.add_argument(
        "--denoising",
        nargs="?",
        const="gaussian",
        choices=DENOISING,
        help="train a denoising autoencoder: gaussian (the default when given alone) or mask",
    )
    train.add_argument("--noise", type=float, help="override training.noise (noise sd or masking probability)")
    train.add_argument(
        "--sparse",
        nargs="?",
        const=SPARSE_WEIGHT,
        type=float,
        metavar="WEIGHT",
        help=f"L1 penalty on the latent activations (default weight when given alone: {SPARSE_WEIGHT:g})",
    )
    train.add_argument("--kl-weight", type=float, help="override training.kl_weight (vae)")
    train.add_argument("--epochs", type=int, help="override training.epochs")
    train.add_argument("--seed", type=int, help="override training.seed")
    train.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    train(load_config(args.config), args)
    return 0


def train(config: Config, args: argparse.Namespace) -> Path:
    from monitor.models import SeriesData, train_model
    from monitor.models.device import resolve_device
    from monitor.models.store import publish
    from monitor.training.report import render, suggested_threshold

    detector = config.detector(args.detector)
    options = _options(detector, args)
    resolve_device(options.device)  # before reading data: a missing GPU should not cost a Kafka scan
    data = _load(config, detector, args)
    points = sum(len(ts) for ts, _ in data.values())
    log.info("training %s (%s) on %d series, %d points", detector.settings.name, options.kind, len(data), points)
    series = {name: SeriesData(ts, values) for name, (ts, values) in data.items()}
    model, metadata = train_model(series, detector.settings.features, options, progress=not args.no_progress)
    provenance = {"source": _source(args), "excluded": [list(r) for r in args.exclude]}
    metadata = dataclasses.replace(metadata, data_range={**metadata.data_range, **provenance})
    k = detector.settings.threshold.k
    out = Path(args.out) if args.out else detector.model.path
    target = publish(model, metadata, out, render(metadata, k))
    t = metadata.training
    print(
        f"saved {metadata.version} to {target}: epochs {t.get('epochs_run')}, "
        f"validation loss {t.get('val_loss', float('nan')):.5f}, "
        f"calendar inputs {'+'.join(metadata.calendar) or 'none'}, "
        f"suggested threshold {suggested_threshold(metadata.validation_scores, k):.5g}; "
        f"report {target / 'report.md'}; now CURRENT in {out}"
    )
    return target


def _load(config: Config, detector: DetectorConfig, args: argparse.Namespace) -> SeriesArrays:
    start, end = args.start, args.end
    decode = decoder(config.input_format, config.max_message_bytes, config.input_options)
    if args.input:
        points: Iterable[Point] = read_points(args.input, decode)
    else:
        from monitor.kafka.tools import read_range

        if args.start is None or args.end is None:
            raise InputError("--topic needs --start and --end (the healthy time range to train on)")
        if args.select_by == "record":
            messages = read_range(config.kafka, args.topic, args.start, args.end)
            start = end = None  # the range applied to record timestamps already
        else:
            messages = read_range(config.kafka, args.topic)
        points = decode_messages(messages, decode)
    data = group_series(_selected(detector, points), detector.settings.features, start, end, args.exclude)
    if not data:
        raise InputError(f"no points for detector {detector.settings.name!r} in the given input and range")
    return data


def _selected(detector: DetectorConfig, points: Iterable[Point]) -> Iterator[Point]:
    """The points the daemon would give this detector, joined into entities when it groups series."""
    s = detector.settings
    selector = Selector(s.series, s.labels, s.entity_label, s.features)
    chosen = (p for p in points if selector.matches(p.series, p.labels))
    if s.entity_label is None:
        yield from chosen
        return
    # In time order the streaming join completes every row; files often hold one series after another.
    assembler = EntityAssembler(s.entity_label, s.features, max_entities=s.max_series)
    for point in sorted(chosen, key=lambda p: p.ts):
        joined = assembler.add(point)
        if joined is not None:
            yield joined


def _options(detector: DetectorConfig, args: argparse.Namespace) -> Any:
    overrides = {
        "kind": args.kind,
        "score_method": args.score,
        "hidden": args.hidden,
        "latent": args.latent,
        "layers": args.layers,
        "calendar": args.calendar,
        "denoising": args.denoising,
        "noise": args.noise,
        "sparse": args.sparse,
        "kl_weight": args.kl_weight,
        "epochs": args.epochs,
        "seed": args.seed,
        "device": args.device,
    }
    return training_options(detector, **{k: v for k, v in overrides.items() if v is not None})


def _source(args: argparse.Namespace) -> str:
    if args.input:
        return f"file {args.input}"
    return f"topic {args.topic} from {format_ts(args.start)} to {format_ts(args.end)} by {args.select_by} time"


def _time_range(text: str) -> tuple[float, float]:
    start, sep, end = text.partition("/")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected START/END, got {text!r}")
    return parse_time(start), parse_time(end)
