"""The `monitor` command: one module per subcommand, and the one place where errors become exit codes.

Exit codes: 0 done, 1 a runtime failure (Kafka, model, input), 2 a usage or configuration error,
130 interrupted. `main(argv)` is callable from tests without a subprocess. Each command module has
`HELP`, `add_arguments(parser)` and `run(args) -> int`, and imports what is slow to load (torch,
kafka-python) only when it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor.cli import alerts, check_config, demo, evaluate, feedback, models, produce, run, train
from monitor.errors import ConfigError, MonitorError
from monitor.logs import setup_logging

log = logging.getLogger("monitor")

COMMANDS = {
    "run": run,
    "train": train,
    "models": models,
    "alerts": alerts,
    "feedback": feedback,
    "produce": produce,
    "demo": demo,
    "evaluate": evaluate,
    "check-config": check_config,
}


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
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return COMMANDS[args.command].run(args)
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
