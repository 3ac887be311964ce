"""Helpers for the tests that check deployment files against the code (tests/unit/test_deploy_*.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from monitor.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
"""Where the dev tools installed with `pip install -e .[dev]` live (hadolint, check-jsonschema)."""


def monitor_args(argv: list[str]) -> dict:
    """`argv` after the `monitor` executable, parsed by the real CLI; fails the test if the CLI refuses it."""
    try:
        return vars(build_parser().parse_args(argv))
    except SystemExit:
        pytest.fail(f"monitor's CLI rejects {argv}")


def yaml_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def served_paths() -> set[str]:
    """The HTTP paths the monitor's endpoint answers, as written in its source."""
    source = "\n".join(p.read_text() for p in (ROOT / "monitor").rglob("*.py"))
    return set(re.findall(r'path == "(/[a-z]+)"', source))


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])
