"""A labelled corpus in one of two layouts, told apart by NAB's label file (`--layout auto`):

- NAB: a folder with `data/<category>/<file>.csv` (timestamp,value) and `combined_windows.json` (NAB's
  labels: `[start, end]` timestamps per file), or a single CSV, which finds its windows in the folder two
  levels above its own when it sits in that layout. Each file trains on its probationary rows.
- labelled CSV (`monitor.evaluation.labelled`, SKAB's layout by default): every other folder or CSV.

Timestamps without a zone are UTC; rows keep their written timestamps so output rows match.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monitor.errors import InputError
from monitor.evaluation.datafile import DataFile
from monitor.evaluation.labelled import SKAB, CsvLayout, load_folder
from monitor.evaluation.nab import Labelled
from monitor.records import UNIVARIATE
from monitor.training.datasets import parse_csv_timestamp

log = logging.getLogger(__name__)

WINDOWS_FILE = "combined_windows.json"


LAYOUTS = ("auto", "nab", "labelled")


def load_corpus(
    path: str | Path, layout: str = "auto", csv_layout: CsvLayout = SKAB, features: Sequence[str] = (UNIVARIATE,)
) -> list[DataFile]:
    """The files at `path` in `layout`: `auto` is NAB's when its combined_windows.json is there (beside
    `data/`, or two folders above a single CSV), else a labelled CSV folder read with `csv_layout`.
    `features` are the detector's (see `monitor.evaluation.labelled` for how they pick columns)."""
    path = Path(path)
    if layout not in LAYOUTS:
        raise InputError(f"--layout {layout!r}: must be one of {', '.join(LAYOUTS)}")
    if layout == "labelled" or (layout == "auto" and not (corpus_root(path) / WINDOWS_FILE).is_file()):
        return load_folder(path, csv_layout, features)
    if csv_layout.train_rows is not None:
        raise InputError(
            f"{path}: --train-rows is for labelled CSV folders; NAB's files train on their probationary rows"
        )
    return _load_nab(path)


def _load_nab(path: Path) -> list[DataFile]:
    """A NAB-layout folder or a single CSV; a file without labels counts as having no anomalies."""
    if path.is_file():
        name = f"{path.parent.name}/{path.name}"
        return [_read_file(path, name, _windows(corpus_root(path) / WINDOWS_FILE).get(name, []))]
    if not (path / "data").is_dir():
        raise InputError(f"{path}: neither a CSV file nor NAB's layout, a folder with data/<category>/<file>.csv")
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
    labelled = Labelled.from_times(name, ts, windows)
    return DataFile(name, tuple(t for t, _ in rows), ts, values[:, None], (UNIVARIATE,), labelled, labelled.probation)
