"""`monitor models`: list a detector's stored model versions, or roll back or forward to one."""

from __future__ import annotations

import argparse

from monitor.config import Config, load_config

HELP = "list a detector's stored model versions, or switch to one"


def add_arguments(models: argparse.ArgumentParser) -> None:
    models.add_argument("--detector", default=None, help="detector name (default: the first)")
    models.add_argument("--use", metavar="VERSION", help="serve this stored version (roll back or forward)")


def run(args: argparse.Namespace) -> int:
    models(load_config(args.config), args)
    return 0


def models(config: Config, args: argparse.Namespace) -> None:
    """List the stored versions of a detector's model (the current one marked), or switch to one."""
    from monitor.models.store import resolve, use, versions

    detector = config.detector(args.detector)
    store = detector.model.path
    if args.use:
        metadata = use(store, args.use)
        print(f"{store}: now serving {metadata.version} ({metadata.kind}); running daemons reload it")
        return
    current = resolve(store).name
    for name in versions(store) or [current]:
        print(f"{'*' if name == current else ' '} {name}")
