"""`monitor evaluate`: replay labelled files (NAB layout) through the engine and score detection quality."""

from __future__ import annotations

import argparse

from monitor.config import load_config

HELP = "replay labelled files (NAB layout) and score detection quality"


def add_arguments(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument("path", help="folder in NAB's layout (data/<category>/<file>.csv, combined_windows.json)")
    evaluate.add_argument("--out", required=True, metavar="DIR", help="per-file results: DIR/<category>/<file>.csv")
    evaluate.add_argument("--config", default=argparse.SUPPRESS, help="configuration file (default: config.yaml)")
    evaluate.add_argument("--detector", default=None, help="detector name (default: the first)")
    evaluate.add_argument("--plots", action="store_true", help="also write DIR/<category>/<file>.png")


def run(args: argparse.Namespace) -> int:
    from monitor.evaluation.evaluate import evaluate

    config = load_config(args.config)
    detector = config.detector(args.detector) if args.detector else config.detectors[0]
    result = evaluate(detector, args.path, args.out, args.plots, config.scoring_threads)
    print(result.report())
    print(f"\n{len(result.replays)} files in {result.seconds:.0f}s; per-file results in {args.out}")
    return 0
