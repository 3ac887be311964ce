"""One labelled file through the daemon's own engine, the way NAB runs a detector.

Each file is one series. Its model is trained only on the file's probationary rows (NAB: the first 15%,
at most 750), then every row goes through `monitor.engine.detector.Engine` in poll-sized batches, exactly as
the daemon's loop hands it points, with the detector's own settings (the shipped config scores every
point: stride 1). Scoring is causal by construction: a verdict is computed when its window's newest
point arrives, and rows between verdicts (stride > 1) score 0. The per-row output is the detector's
score and threshold, an `anomaly_score` in [0, 1] derived from their ratio (see `replay`), and `alert`
on the rows where the daemon would have published a firing alert.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from monitor.config import DetectorConfig
from monitor.engine.detector import Detector, Engine
from monitor.engine.scoring import Scorer
from monitor.evaluation.corpus import DataFile
from monitor.evaluation.nab import probationary_rows
from monitor.records import UNIVARIATE, Point

log = logging.getLogger(__name__)

POLL_POINTS = 2000
"""Points per `Engine.process` call, like one poll of the daemon's file source."""


@dataclass(frozen=True, eq=False)
class Replay:
    """What the detector said about every row of one file (NaN / 0 where no window was scored yet)."""

    file: DataFile
    score: np.ndarray
    threshold: np.ndarray
    anomaly_score: np.ndarray
    alert: np.ndarray
    seconds: float


def train_scorer(detector: DetectorConfig, file: DataFile, threads: int = 1) -> Scorer:
    """Train the detector's model as `monitor train` would, on the file's probationary rows only, and load
    it the way the daemon does (artifact on disk, `load_scorer`)."""
    from monitor.models import SeriesData, save_artifact, train_model
    from monitor.service.reload import load_scorer
    from monitor.training.options import training_options

    options = training_options(detector, threads=threads)  # the configured settings, no CLI overrides
    head = probationary_rows(len(file.ts))
    data = {file.series: SeriesData(file.ts[:head], file.values[:head, None])}
    module, metadata = train_model(data, detector.settings.features, options, progress=False)
    with tempfile.TemporaryDirectory(prefix="monitor-evaluate-") as tmp:
        save_artifact(module, metadata, Path(tmp) / "model")
        return load_scorer(replace(detector, model=replace(detector.model, path=Path(tmp) / "model")), threads)


def replay(detector: DetectorConfig, file: DataFile, scorer: Scorer) -> Replay:
    """Every row of `file` through a fresh engine with the detector's settings and `scorer`.

    A row's `anomaly_score` is its verdict's score/threshold squashed onto [0, 1), and 0 while an alert
    of the series is already open (after the row where it fired, up to the row where it resolves): the
    daemon pages once per incident, and NAB counts every detection outside a window as a false positive.
    """
    started = time.perf_counter()
    engine = Engine([Detector(detector.settings, scorer)])
    n = len(file.ts)
    row_of: dict[float, int] = {}
    for i, t in enumerate(file.ts):  # the window store keeps one of duplicate timestamps
        row_of.setdefault(float(t), i)
    score, threshold = np.full(n, np.nan), np.full(n, np.nan)
    anomaly, alert = np.zeros(n), np.zeros(n, dtype=bool)
    opened: dict[str, int] = {}
    for points in _polls(file):
        outcome = engine.process(points)
        for verdict in outcome.verdicts:
            i = row_of.get(verdict.ts)
            if i is not None:  # None: a point the rules made up (gap filling), not a row of the file
                score[i], threshold[i] = verdict.score, verdict.threshold
                anomaly[i] = 0.0 if verdict.warming_up else _squash(verdict.score, verdict.threshold)
        for event in outcome.alerts:
            if event.status == "firing":
                alert[row_of[event.at]] = True
                opened[event.alert_id] = row_of[event.at]
            else:
                anomaly[opened.pop(event.alert_id) + 1 : row_of[event.at] + 1] = 0.0
    for first in opened.values():  # still open at the end of the file
        anomaly[first + 1 :] = 0.0
    return Replay(file, score, threshold, anomaly, alert, time.perf_counter() - started)


def _squash(score: float, threshold: float) -> float:
    """score/threshold mapped monotonically onto [0, 1): 0.5 exactly at the threshold."""
    if threshold <= 0:
        return 1.0 if score > 0 else 0.0
    ratio = max(score, 0.0) / threshold
    return ratio / (1.0 + ratio)


def _polls(file: DataFile) -> Iterator[list[Point]]:
    for start in range(0, len(file.ts), POLL_POINTS):
        stop = min(start + POLL_POINTS, len(file.ts))
        yield [Point(file.series, float(file.ts[i]), {UNIVARIATE: float(file.values[i])}) for i in range(start, stop)]


def write_replay(result: Replay, out: Path) -> Path:
    """`out/<category>/<file>.csv` with timestamp, value, anomaly_score, alert."""
    target = out / result.file.name
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["timestamp", "value", "anomaly_score", "alert"])
        for ts, value, a, flag in zip(
            result.file.timestamps, result.file.values, result.anomaly_score, result.alert, strict=True
        ):
            writer.writerow([ts, repr(float(value)), repr(float(a)), int(flag)])
    return target
