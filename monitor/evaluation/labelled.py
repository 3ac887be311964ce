"""Labelled CSV folders: every CSV under a folder holds a time column, feature columns and a 0/1 label
column; SKAB's layout (`;`-separated, `datetime`, label `anomaly`, `changepoint` left out) by default.

Each file is one multivariate entity. Its features are the detector's `features` when the files have
those columns; with the default univariate `[value]` and no `value` column, every column that is not the
time, the label or left out is a feature, in file order, so SKAB needs no edit of `config.yaml`.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.errors import InputError
from monitor.evaluation.datafile import DataFile
from monitor.evaluation.nab import Labelled
from monitor.evaluation.outliers import runs
from monitor.records import UNIVARIATE
from monitor.training.datasets import parse_csv_timestamp


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """How to read a labelled CSV folder (`monitor evaluate --separator --time --label --drop --train-rows`)."""

    separator: str = ";"
    time: str = "datetime"
    label: str = "anomaly"
    drop: tuple[str, ...] = ("changepoint",)
    train_rows: int | None = None
    """The first rows of each file that train its model; required (SKAB's protocol: 400)."""


SKAB = CsvLayout()
"""SKAB's layout, without the training rows (they belong to the protocol, not the layout)."""


def load_folder(path: Path, layout: CsvLayout, features: Sequence[str]) -> list[DataFile]:
    """Every CSV under `path` (or `path` itself when it is a CSV), in natural order of their paths."""
    files = [path] if path.is_file() else sorted(path.rglob("*.csv"), key=_natural)
    if not files:
        raise InputError(
            f"{path}: no CSV files; expected NAB's layout (data/<category>/<file>.csv with combined_windows.json) "
            "or a folder of labelled CSV files"
        )
    if layout.train_rows is None:
        raise InputError(f"{path}: a labelled CSV corpus needs --train-rows N (the rows of each file that train it)")
    return [
        _read(file, file.name if file == path else file.relative_to(path).as_posix(), layout, features)
        for file in files
    ]


def _natural(path: Path) -> list[int | str]:
    """`other/2.csv` before `other/10.csv`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def _read(path: Path, name: str, layout: CsvLayout, configured: Sequence[str]) -> DataFile:
    with path.open(newline="") as f:
        reader = csv.reader(f, delimiter=layout.separator)
        header = next(reader, [])
        rows = list(reader)
    features = _features(path, header, layout, configured)
    columns = [header.index(c) for c in (layout.time, *features, layout.label)]
    table = [[row[i] if i < len(row) else "" for i in columns] for row in rows]
    timestamps = tuple(row[0] for row in table)
    ts = np.array([_number(path, n, layout.time, t, parse_csv_timestamp) for n, t in enumerate(timestamps, 2)])
    values = np.array(
        [
            [_number(path, n, c, v, float) for c, v in zip(features, row[1:-1], strict=True)]
            for n, row in enumerate(table, 2)
        ]
    ).reshape(len(table), len(features))
    labels = np.array([_label(path, n, layout.label, row[-1]) for n, row in enumerate(table, 2)], dtype=bool)
    if len(table) <= layout.train_rows:
        raise InputError(f"{path}: {len(table)} rows, none left to test after --train-rows {layout.train_rows}")
    labelled = Labelled(name, len(table), tuple(runs(labels)))
    return DataFile(name, timestamps, ts, values, features, labelled, layout.train_rows, layout.time, layout.label)


def _features(path: Path, header: list[str], layout: CsvLayout, configured: Sequence[str]) -> tuple[str, ...]:
    for column in (layout.time, layout.label):
        if column not in header:
            raise InputError(f"{path}: no column {column!r} (columns: {header}); set the separator, --time and --label")
    if tuple(configured) == (UNIVARIATE,) and UNIVARIATE not in header:
        return tuple(c for c in header if c not in (layout.time, layout.label, *layout.drop))
    missing = [f for f in configured if f not in header]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r} for the detector's features (columns: {header})")
    return tuple(configured)


def _number(path: Path, line: int, column: str, text: str, parse: Callable[[str], float]) -> float:
    try:
        value = parse(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{path}:{line}: column {column!r}: not a finite number or a time: {text!r}")
    return value


def _label(path: Path, line: int, column: str, text: str) -> bool:
    value = _number(path, line, column, text, float)
    if value not in (0.0, 1.0):
        raise InputError(f"{path}:{line}: column {column!r}: a label must be 0 or 1, got {text!r}")
    return value == 1.0
