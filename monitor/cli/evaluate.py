"""`monitor evaluate`: replay labelled files (NAB's layout, or labelled CSV files such as SKAB's) through
the engine and score detection quality."""

from __future__ import annotations

import argparse

from monitor.config import load_config

HELP = "replay labelled files (NAB's layout or labelled CSV files) and score detection quality"


def add_arguments(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument(
        "path", help="NAB's layout (data/<category>/<file>.csv, combined_windows.json), or labelled CSV files"
    )
    evaluate.add_argument("--out", required=True, metavar="DIR", help="per-file results: DIR/<relative path>.csv")
    evaluate.add_argument("--config", default=argparse.SUPPRESS, help="configuration file (default: config.yaml)")
    evaluate.add_argument("--detector", default=None, help="detector name (default: the first)")
    evaluate.add_argument("--plots", action="store_true", help="also write DIR/<relative path>.png")
    evaluate.add_argument(
        "--layout",
        choices=("auto", "nab", "labelled"),
        default="auto",
        help="auto (default): NAB's when combined_windows.json is there, else labelled CSV files",
    )
    protocol = evaluate.add_mutually_exclusive_group()
    protocol.add_argument(
        "--fleet",
        type=_folds,
        default=0,
        metavar="K",
        help="fleet protocol: K folds of files, each scored by one model trained without them (series it never saw)",
    )
    protocol.add_argument(
        "--shared",
        action="store_true",
        help="one model trained on all files scores every file (series it knows, one model for all)",
    )
    labelled = evaluate.add_argument_group("labelled CSV files (SKAB's layout by default)")
    labelled.add_argument(
        "--train-rows", type=_positive, metavar="N", help="the first N rows of each file train its model"
    )
    labelled.add_argument("--separator", default=";", help="column separator (default: ';')")
    labelled.add_argument("--time", default="datetime", metavar="COLUMN", help="time column (default: datetime)")
    labelled.add_argument("--label", default="anomaly", metavar="COLUMN", help="0/1 label column (default: anomaly)")
    labelled.add_argument(
        "--drop",
        default="changepoint",
        metavar="COLUMNS",
        help="comma-separated columns that are neither features nor labels (default: changepoint)",
    )


def run(args: argparse.Namespace) -> int:
    from monitor.evaluation.evaluate import evaluate
    from monitor.evaluation.labelled import CsvLayout

    config = load_config(args.config)
    detector = config.detector(args.detector)
    drop = tuple(c for c in args.drop.split(",") if c)
    csv_layout = CsvLayout(args.separator, args.time, args.label, drop, args.train_rows)
    result = evaluate(
        detector,
        args.path,
        args.out,
        args.plots,
        config.training_threads,
        args.layout,
        csv_layout,
        fleet=args.fleet,
        shared=args.shared,
    )
    print(result.report())
    print(f"\n{len(result.replays)} files in {result.seconds:.0f}s; per-file results in {args.out}")
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows of at least 1, got {text!r}")
    return int(text)


def _folds(text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"expected a number of folds of at least 2, got {text!r}")
    return int(text)
