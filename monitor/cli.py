"""The `monitor` command: subcommands, and the one place where errors become exit codes.

Exit codes: 0 done, 1 a runtime failure (Kafka, model, input), 2 a usage or configuration error,
130 interrupted. `main(argv)` is callable from tests without a subprocess.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor.config import Config, load_config
from monitor.errors import ConfigError, MonitorError
from monitor.logs import setup_logging
from monitor.produce import add_produce_arguments
from monitor.train_cli import add_models_arguments, add_train_arguments

log = logging.getLogger("monitor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitor", description="Streaming anomaly monitor for Kafka metrics.")
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    parser.add_argument("--config", default="config.yaml", help="configuration file (default: %(default)s)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--log-format",
        default=os.environ.get("MONITOR_LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="json: one object per line, for log shippers (default: $MONITOR_LOG_FORMAT or text)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon (Kafka in, alerts and metrics out)")
    run.add_argument(
        "--input", metavar="FILE", help="replay JSON-lines points from FILE ('-' = stdin) instead of Kafka"
    )
    run.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until SIGTERM)")
    run.add_argument("--listen", metavar="HOST:PORT", help="override exporter.listen")

    train = sub.add_parser("train", help="train a detector's model on healthy data and publish a new version")
    add_train_arguments(train)
    models = sub.add_parser("models", help="list a detector's stored model versions, or switch to one")
    add_models_arguments(models)

    produce = sub.add_parser("produce", help="write a synthetic metric stream with injected anomalies")
    add_produce_arguments(produce)

    demo = sub.add_parser("demo", help="the whole pipeline on a local Kafka, bounded in time")
    demo.add_argument("--workdir", default="out/demo", help="where the demo's model and files go")
    demo.add_argument("--live-seconds", type=float, default=60.0, help="how long the live stream runs")

    evaluate = sub.add_parser("evaluate", help="replay labelled files (NAB layout) and score detection quality")
    evaluate.add_argument("path", help="folder in NAB's layout (data/<category>/<file>.csv, combined_windows.json)")
    evaluate.add_argument("--out", required=True, metavar="DIR", help="per-file results: DIR/<category>/<file>.csv")
    evaluate.add_argument("--config", default=argparse.SUPPRESS, help="configuration file (default: config.yaml)")
    evaluate.add_argument("--detector", default=None, help="detector name (default: the first)")
    evaluate.add_argument("--plots", action="store_true", help="also write DIR/<category>/<file>.png")

    sub.add_parser("check-config", help="validate the configuration file and print a summary")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        _error(args, str(exc))
        return 2
    except MonitorError as exc:
        _error(args, f"monitor: error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


def _error(args: argparse.Namespace, text: str) -> None:
    """In JSON mode the error is a log record too, so a log shipper sees every line in one format."""
    if args.log_format == "json":
        log.error(text)
    else:
        print(text, file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"{config.source}: ok")
    print(f"  kafka {config.kafka.bootstrap_servers}: {config.kafka.metrics_topic} -> {config.kafka.alert_topic}")
    for d in config.detectors:
        s = d.settings
        print(f"  detector {s.name}: series {s.series!r}, window {s.window}, stride {s.stride}, model {d.model.path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.daemon import build_service

    config = _with_listen(load_config(args.config), args.listen)
    service, close = build_service(config, args.input)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop.set())
    try:
        summary = service.run(args.duration)
    finally:
        close()
    if args.log_format == "text":  # in JSON, the "stopped" event carries the same counts
        print(f"summary: {summary.line()}", file=sys.stderr, flush=True)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from monitor.train_cli import train

    train(load_config(args.config), args)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from monitor.train_cli import models

    models(load_config(args.config), args)
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from monitor.produce import produce

    produce(args, load_config(args.config).kafka if args.topic else None)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo_stack import run_demo

    return run_demo(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from monitor.evaluation import evaluate

    config = load_config(args.config)
    detector = config.detector(args.detector) if args.detector else config.detectors[0]
    result = evaluate(detector, args.path, args.out, args.plots, config.scoring_threads)
    print(result.report())
    print(f"\n{len(result.replays)} files in {result.seconds:.0f}s; per-file results in {args.out}")
    return 0


def _with_listen(config: Config, listen: str | None) -> Config:
    if listen is None:
        return config
    from dataclasses import replace

    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--listen: must be HOST:PORT, got {listen!r}")
    return replace(config, listen_host=host or "0.0.0.0", listen_port=int(port))


COMMANDS = {
    "run": cmd_run,
    "train": cmd_train,
    "models": cmd_models,
    "produce": cmd_produce,
    "demo": cmd_demo,
    "evaluate": cmd_evaluate,
    "check-config": cmd_check_config,
}
