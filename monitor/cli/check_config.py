"""`monitor check-config`: validate the configuration file and print what it sets up."""

from __future__ import annotations

import argparse

from monitor.config import load_config

HELP = "validate the configuration file and print a summary"


def add_arguments(check_config: argparse.ArgumentParser) -> None:
    """No options of its own: it checks the file that `--config` names."""


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"{config.source}: ok")
    k = config.kafka
    print(f"  kafka {k.bootstrap_servers}: {k.metrics_topic} -> {k.alert_topic} (verdicts from {k.feedback_topic})")
    for d in config.detectors:
        s = d.settings
        print(f"  detector {s.name}: series {s.series!r}, window {s.window}, stride {s.stride}, model {d.model.path}")
    return 0
