"""One labelled file through the daemon's own engine, the way NAB runs a detector.

Each file is one series (one entity of all its features). Its model is trained only on the file's
training rows (NAB: the probationary first 15%, at most 750; a labelled CSV: `--train-rows`), then every
row goes through `monitor.engine.detector.Engine` in poll-sized batches, exactly as the daemon's loop
hands it points, with the detector's own settings (the shipped config scores every point: stride 1),
so the windows and thresholds warm up on the training rows as a running daemon's would. Scoring is
causal by construction: a verdict is computed when its window's newest point arrives, and rows between
verdicts (stride > 1) score 0. The per-row output is the detector's score and threshold, an
`anomaly_score` in [0, 1] derived from their ratio (see `replay`), `alert` on the rows where the daemon
would have published a firing alert, and `active` on the rows where one is open.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from monitor.config import DetectorConfig
from monitor.engine.detector import Detector, Engine
from monitor.engine.scoring import Scorer
from monitor.evaluation.datafile import DataFile
from monitor.records import Point, Verdict

log = logging.getLogger(__name__)

POLL_POINTS = 2000
"""Points per `Engine.process` call, like one poll of the daemon's file source."""
JUST_UNDER_THE_BAR = float(np.nextafter(0.5, 0.0))
"""The highest `anomaly_score` of a row where no alert fires, however high its score: 0.5 is where the daemon
pages."""


@dataclass(frozen=True, eq=False)
class Replay:
    """What the detector said about every row of one file (NaN / 0 where no window was scored yet)."""

    file: DataFile
    score: np.ndarray
    threshold: np.ndarray
    anomaly_score: np.ndarray
    alert: np.ndarray
    active: np.ndarray
    seconds: float


def for_file(detector: DetectorConfig, file: DataFile) -> DetectorConfig:
    """The detector with the file's features: a labelled CSV's columns may differ from the configured ones."""
    return replace(detector, settings=replace(detector.settings, features=file.features))


def train_scorer(detector: DetectorConfig, files: Sequence[DataFile], threads: int = 1) -> Scorer:
    """Train the detector's model as `monitor train` would, on the training rows of `files` only (one
    series each), and load it the way the daemon does (artifact on disk, `load_scorer`)."""
    from monitor.models import SeriesData, save_artifact, train_model
    from monitor.service.reload import load_scorer
    from monitor.training.options import training_options

    detector = for_file(detector, files[0])  # a corpus' files share their features (`load_corpus`)
    options = training_options(detector, threads=threads)  # the configured settings, no CLI overrides
    data = {f.series: SeriesData(f.ts[: f.train_rows], f.values[: f.train_rows]) for f in files}
    module, metadata = train_model(data, files[0].features, options, progress=False)
    with tempfile.TemporaryDirectory(prefix="monitor-evaluate-") as tmp:
        save_artifact(module, metadata, Path(tmp) / "model")
        return load_scorer(replace(detector, model=replace(detector.model, path=Path(tmp) / "model")), threads)


def replay(detector: DetectorConfig, file: DataFile, scorer: Scorer) -> Replay:
    """Every row of `file` through a fresh engine with the detector's settings and `scorer`.

    A row's `anomaly_score` is its verdict's score/threshold squashed onto [0, 1), and 0 while an alert
    of the series is already open (after the row where it fired, up to the row where it resolves): the
    daemon pages once per incident, and NAB counts every detection outside a window as a false positive.
    Within `alerting.cooldown` judged windows after a resolve the series pages only at `critical_ratio` ×
    its threshold, so there the ratio is taken to that bar. 0.5 is where the daemon pages: a row reaches
    it only where an alert fires, and every other row stays under it (a window judged normal however
    high its score, settled after a larger peak, or anomalous in a run that has not fired yet, under
    `alerting.for` or `confirm_after`).
    """
    started = time.perf_counter()
    engine = Engine([Detector(for_file(detector, file).settings, scorer)])
    n = len(file.ts)
    row_of: dict[float, int] = {}
    for i, t in enumerate(file.ts):  # the window store keeps one of duplicate timestamps
        row_of.setdefault(float(t), i)
    score, threshold = np.full(n, np.nan), np.full(n, np.nan)
    anomaly, alert, active = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    opened: dict[str, int] = {}
    critical_ratio = detector.settings.alerting.critical_ratio
    for points in _polls(file):
        outcome = engine.process(points)
        for verdict in outcome.verdicts:
            i = row_of.get(verdict.ts)
            if i is not None:  # None: a point the rules made up (gap filling), not a row of the file
                score[i], threshold[i] = verdict.score, verdict.threshold
                anomaly[i] = 0.0 if verdict.warming_up else _squash_to_bar(verdict, critical_ratio)
        for event in outcome.alerts:
            if event.status == "firing":
                alert[row_of[event.at]] = True
                opened[event.alert_id] = row_of[event.at]
            else:
                first = opened.pop(event.alert_id)
                anomaly[first + 1 : row_of[event.at] + 1] = 0.0
                active[first : row_of[event.at]] = True  # resolved on that row: no longer open there
    for first in opened.values():  # still open at the end of the file
        anomaly[first + 1 :] = 0.0
        active[first:] = True
    anomaly = np.where(alert, np.maximum(anomaly, 0.5), np.minimum(anomaly, JUST_UNDER_THE_BAR))
    return Replay(file, score, threshold, anomaly, alert, active, time.perf_counter() - started)


def _squash_to_bar(verdict: Verdict, critical_ratio: float) -> float:
    """The verdict's score squashed against the bar the daemon pages at: its threshold, or `critical_ratio`
    x the threshold while the series is in its cooldown (`Verdict.cooling`)."""
    return _squash(verdict.score, verdict.threshold * (critical_ratio if verdict.cooling else 1.0))


def _squash(score: float, threshold: float) -> float:
    """score/threshold mapped monotonically onto [0, 1): 0.5 exactly at the threshold."""
    if threshold <= 0:
        return 1.0 if score > 0 else 0.0
    ratio = max(score, 0.0) / threshold
    return ratio / (1.0 + ratio)


def _polls(file: DataFile) -> Iterator[list[Point]]:
    for start in range(0, len(file.ts), POLL_POINTS):
        rows = file.values[start : start + POLL_POINTS].tolist()
        yield [
            Point(file.series, float(file.ts[start + i]), dict(zip(file.features, row, strict=True)))
            for i, row in enumerate(rows)
        ]


def write_replay(result: Replay, out: Path) -> Path:
    """`out/<the file's relative path>`: time column, features, label (labelled CSV), anomaly_score, alert,
    active. NAB's files are written whole (NAB scores them itself); a labelled CSV's test rows only."""
    file = result.file
    target = out / file.name
    target.parent.mkdir(parents=True, exist_ok=True)
    label = [] if file.label_column is None else [file.label_column]
    first = 0 if file.label_column is None else file.train_rows
    labels = file.labels.astype(int)
    with target.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([file.time_column, *file.features, *label, "anomaly_score", "alert", "active"])
        for i in range(first, len(file.ts)):
            cells = [repr(float(v)) for v in file.values[i]] + [str(labels[i])] * len(label)
            writer.writerow(
                [
                    file.timestamps[i],
                    *cells,
                    repr(float(result.anomaly_score[i])),
                    int(result.alert[i]),
                    int(result.active[i]),
                ]
            )
    return target
