"""Labelled files in NAB's layout: `data/<category>/<file>.csv` (timestamp,value) and the labelled windows.

A corpus is a folder with `data/` and `combined_windows.json` (NAB's labels: `[start, end]` timestamps per
file), or a single CSV, which finds its windows in the folder two levels above its own when it sits in
that layout. Timestamps without a zone are UTC; rows keep their written timestamps so output rows match.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.errors import InputError
from monitor.evaluation.nab import Labelled
from monitor.training.datasets import parse_csv_timestamp

log = logging.getLogger(__name__)

WINDOWS_FILE = "combined_windows.json"


@dataclass(frozen=True, eq=False)
class DataFile:
    """One labelled series: `name` is NAB's relative path (`category/file.csv`)."""

    name: str
    timestamps: tuple[str, ...]
    """The timestamp column as written, so output rows match input rows."""
    ts: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[float, float], ...]

    @property
    def series(self) -> str:
        return self.name.removesuffix(".csv")

    @property
    def labelled(self) -> Labelled:
        return Labelled.from_times(self.name, self.ts, self.windows)


def load_corpus(path: str | Path) -> list[DataFile]:
    """A NAB-layout folder (`data/<category>/<file>.csv` + combined_windows.json) or a single CSV.

    A single CSV takes its windows from a combined_windows.json two folders up (NAB's layout) when there
    is one; a file without labels is still replayed and counts as having no anomalies.
    """
    path = Path(path)
    if path.is_file():
        name = f"{path.parent.name}/{path.name}"
        return [_read_file(path, name, _windows(corpus_root(path) / WINDOWS_FILE).get(name, []))]
    if not (path / "data").is_dir():
        raise InputError(f"{path}: neither a CSV file nor a folder with data/<category>/<file>.csv")
    windows = _windows(path / WINDOWS_FILE)
    files = sorted((path / "data").glob("*/*.csv"))
    if not files:
        raise InputError(f"{path}/data: no CSV files in data/<category>/")
    corpus = []
    for file in files:
        name = f"{file.parent.name}/{file.name}"
        if name not in windows:
            log.warning("%s: not in %s, evaluated as having no anomalies", name, WINDOWS_FILE)
        corpus.append(_read_file(file, name, windows.get(name, [])))
    return corpus


def corpus_root(path: Path) -> Path:
    """The folder holding combined_windows.json and profiles.json: `path` itself, or for a CSV in NAB's
    layout (`root/data/<category>/<file>.csv`) two folders above its own."""
    return path if path.is_dir() else path.parent.parent.parent


def _windows(path: Path) -> dict[str, list[list[str]]]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the labelled windows: {exc}") from None


def _read_file(path: Path, name: str, limits: Sequence[Sequence[str]]) -> DataFile:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"timestamp", "value"} <= set(reader.fieldnames or ()):
            raise InputError(f"{path}: CSV needs a header with timestamp and value")
        rows = [(r["timestamp"], r["value"]) for r in reader]
    try:
        ts = np.array([parse_csv_timestamp(t) for t, _ in rows])
        values = np.array([float(v) for _, v in rows])
        windows = tuple((parse_csv_timestamp(a), parse_csv_timestamp(b)) for a, b in limits)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    return DataFile(name, tuple(t for t, _ in rows), ts, values, windows)
