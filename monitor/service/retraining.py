"""Scheduled retraining inside the daemon, on recent data that was not flagged anomalous. Off by default.

A service task per detector with `retraining.every` > 0. It keeps the last `history` points of the first
`max_series` series the detector owns (memory: history × features floats per series) and the spans of
the windows judged anomalous (except those of alerts a person dismissed as false positives: that pattern
is normal for the series, and the next model should learn it). When due, it fine-tunes the model the
store serves on that data, those spans left out, in a background thread (one at a time; torch keeps
the daemon's thread count), and publishes the result to the model store with its report. It continues
from the serving weights because ten epochs from scratch give a far weaker model than the one they
replace (NAB 37 against 64 points, docs/evaluation.md). The `ModelReloader`
then swaps it in like any new version, in the loop thread, so retraining never scores a window itself.

Training competes with scoring for CPU: keep `history`, `max_series`, `epochs` and the training
`max_windows` small on small hosts.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from monitor.config import DetectorConfig
from monitor.engine.detector import Detector, Routed
from monitor.engine.entities import EntityAssembler
from monitor.engine.verdicts import Outcome
from monitor.logs import event
from monitor.records import Point

if TYPE_CHECKING:
    from monitor.models import ModelMetadata, TrainOptions

log = logging.getLogger(__name__)


class Retrainer:
    def __init__(
        self,
        detector: Detector,
        config: DetectorConfig,
        threads: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.detector, self.config, self.threads, self.clock = detector, config, threads, clock
        self.settings = config.retraining
        self.due = clock() + self.settings.every
        self._rows: dict[str, deque[tuple[float, list[float]]]] = {}
        self._anomalous: dict[str, list[tuple[float, float]]] = {}
        s = detector.settings
        self._entities = EntityAssembler(s.entity_label, s.features, s.max_series) if s.entity_label else None
        self._thread: threading.Thread | None = None

    def after_step(self, points: Sequence[Routed], outcome: Outcome) -> None:
        for point, detector in points:
            if detector is self.detector:
                self._keep(point)
        for verdict in outcome.verdicts:
            if verdict.anomalous and verdict.detector == self.detector.settings.name and verdict.series in self._rows:
                self._anomalous.setdefault(verdict.series, []).append((verdict.window_start, verdict.ts))
        for alert in outcome.alerts:
            if alert.resolution == "dismissed" and alert.detector == self.detector.settings.name:
                self._readmit(alert.series, alert.started_at)
        if self.clock() >= self.due:
            self.due = self.clock() + self.settings.every
            self.start()

    def start(self) -> bool:
        """Train and publish a new version in the background now; False while the previous one still runs."""
        if self._thread is not None and self._thread.is_alive():
            event(log, "retraining_skipped", detector=self.detector.settings.name, reason="previous one still running")
            return False
        data, excluded = self._snapshot()
        self._thread = threading.Thread(target=self._train, args=(data, excluded), name="retraining", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running retraining (if any) is done; for shutdown and tests."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _keep(self, point: Point) -> None:
        if self._entities is not None:
            joined = self._entities.add(point)
            if joined is None:
                return
            point = joined
        rows = self._rows.get(point.series)
        if rows is None:
            if len(self._rows) >= self.settings.max_series:
                return
            rows = self._rows[point.series] = deque(maxlen=self.settings.history)
        try:
            rows.append((point.ts, [point.values[f] for f in self.detector.settings.features]))
        except KeyError:
            return
        spans = self._anomalous.get(point.series)
        if spans and spans[0][1] < rows[0][0]:  # spans that ended before the oldest kept point are moot
            self._anomalous[point.series] = [span for span in spans if span[1] >= rows[0][0]]

    def _readmit(self, series: str, started_at: float) -> None:
        """A person dismissed the alert whose anomalous run began at `started_at`: its windows are normal
        data after all, so the next model learns the pattern instead of leaving it out."""
        spans = self._anomalous.get(series)
        if spans:
            self._anomalous[series] = [span for span in spans if span[1] < started_at]

    def _snapshot(self) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[tuple[float, float]]]:
        """Copies of the kept points, without those inside anomalous windows, so the thread owns its data."""
        data, excluded = {}, []
        for series, rows in self._rows.items():
            ts = np.array([t for t, _ in rows])
            values = np.array([v for _, v in rows], dtype=np.float64).reshape(len(rows), -1)
            keep = np.ones(len(ts), dtype=bool)
            for start, end in self._anomalous.get(series, []):
                keep &= (ts < start) | (ts > end)
                excluded.append((start, end))
            data[series] = (ts[keep], values[keep])
        return data, excluded

    def _train(self, data: dict[str, tuple[np.ndarray, np.ndarray]], excluded: list[tuple[float, float]]) -> None:
        from monitor.models import SeriesData, load_artifact, train_model
        from monitor.models.store import publish, resolve
        from monitor.training.report import render

        name = self.detector.settings.name
        started = time.monotonic()
        try:
            serving = load_artifact(resolve(self.config.model.path))
            series = {s: SeriesData(ts, values) for s, (ts, values) in data.items()}
            options = self._options(serving.metadata)
            model, metadata = train_model(series, serving.metadata.features, options, progress=False, start=serving)
            provenance = {
                "source": "scheduled retraining in the daemon",
                "continued_from": serving.metadata.version,
                "excluded": [list(e) for e in excluded],
            }
            metadata = dataclasses.replace(metadata, data_range={**metadata.data_range, **provenance})
            publish(model, metadata, self.config.model.path, render(metadata, self.detector.settings.threshold.k))
        except Exception as exc:  # a failed retraining must never take the daemon down
            event(log, "retraining_failed", logging.WARNING, detector=name, error=f"{type(exc).__name__}: {exc}")
            return
        event(
            log,
            "model_retrained",
            detector=name,
            version=metadata.version,
            series=len(series),
            points=metadata.data_range["points"],
            excluded=len(excluded),
            continued_from=serving.metadata.version,
            seconds=round(time.monotonic() - started, 1),
        )

    def _options(self, serving: ModelMetadata) -> TrainOptions:
        """The configured training settings, `retraining.epochs` of them, with the serving model's shape:
        training continues from its weights (a model trained from scratch in a few epochs scores far
        worse than the one it replaces; docs/evaluation.md)."""
        from monitor.training.options import training_options

        return training_options(
            self.config,
            epochs=self.settings.epochs,
            threads=self.threads,
            kind=serving.kind,
            hidden=serving.hidden,
            latent=serving.latent,
            layers=serving.layers,
            score_tail=serving.score_tail,
            hide_scored=serving.hidden_steps > 0,
        )
