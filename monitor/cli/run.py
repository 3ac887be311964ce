"""`monitor run`: the daemon (Kafka in, alerts and metrics out), or the same engine over a file."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace

from monitor.config import Config, load_config
from monitor.errors import ConfigError

HELP = "run the daemon (Kafka in, alerts and metrics out)"


def add_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--input", metavar="FILE", help="replay JSON-lines points from FILE ('-' = stdin) instead of Kafka"
    )
    run.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until SIGTERM)")
    run.add_argument("--listen", metavar="HOST:PORT", help="override exporter.listen")


def run(args: argparse.Namespace) -> int:
    from monitor.service.daemon import build_service

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


def _with_listen(config: Config, listen: str | None) -> Config:
    if listen is None:
        return config
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--listen: must be HOST:PORT, got {listen!r}")
    return replace(config, listen_host=host or "0.0.0.0", listen_port=int(port))
