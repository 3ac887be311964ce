"""The engine: points in, verdicts and alert events out. No I/O: sources and sinks live in the service.

A `Detector` owns the series that match its selector: their windows, thresholds and alert state, and
one `Scorer`. The `Engine` routes each point to the first detector whose selector matches and scores
every detector's ready windows in one batched call per `process` (one poll), never one call per window.
"""

from __future__ import annotations

import fnmatch
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.alerting import AlertSettings, AlertTracker
from monitor.errors import ModelError
from monitor.records import Alert, Point, Verdict, Window
from monitor.scoring import Scorer
from monitor.threshold import ThresholdBank, ThresholdSettings
from monitor.windows import WindowStore

MAX_ROUTES = 200_000
_UNROUTED = object()


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    name: str = "default"
    series: str = "*"
    """Glob over series ids (`web-*/cpu`); the first detector that matches a series owns it."""
    features: tuple[str, ...] = ("value",)
    window: int = 32
    stride: int = 4
    max_series: int = 100_000
    threshold: ThresholdSettings = field(default_factory=ThresholdSettings)
    alerting: AlertSettings = field(default_factory=AlertSettings)


@dataclass(slots=True)
class Outcome:
    """What one `process` call produced: verdicts and alerts detector by detector, each in input order."""

    verdicts: list[Verdict] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    scoring_seconds: dict[str, float] = field(default_factory=dict)
    """Time of each detector's batched scoring call."""

    def extend(self, other: Outcome) -> None:
        self.verdicts.extend(other.verdicts)
        self.alerts.extend(other.alerts)
        self.scoring_seconds.update(other.scoring_seconds)


class Detector:
    def __init__(self, settings: DetectorSettings, scorer: Scorer) -> None:
        _check_compatible(settings, scorer)
        self.settings = settings
        self.scorer = scorer
        self.thresholds = ThresholdBank(settings.threshold, scorer.baseline_scores())
        self.alerts = AlertTracker(settings.name, settings.alerting)
        self.windows = WindowStore(
            settings.window, settings.stride, settings.features, settings.max_series, self._forget
        )

    def matches(self, series: str) -> bool:
        return fnmatch.fnmatchcase(series, self.settings.series)

    def score(self, windows: Sequence[Window]) -> Outcome:
        """Score a batch of windows in one call and run each result through threshold and alerting."""
        outcome = Outcome()
        if not windows:
            return outcome
        batch = np.stack([w.data for w in windows])
        started = time.perf_counter()
        result = self.scorer.score([w.series for w in windows], batch)
        outcome.scoring_seconds[self.settings.name] = time.perf_counter() - started
        for window, score, errors in zip(windows, result.scores, result.feature_errors, strict=True):
            verdict = self._verdict(window, float(score), errors)
            outcome.verdicts.append(verdict)
            alert = self.alerts.observe(verdict, self.scorer.version)
            if alert is not None:
                outcome.alerts.append(alert)
        return outcome

    def _forget(self, series: str) -> None:
        """An evicted series leaves nothing behind, so memory stays bounded by `max_series`."""
        self.thresholds.forget(series)
        self.alerts.forget(series)

    def _verdict(self, window: Window, score: float, errors: np.ndarray) -> Verdict:
        judgement = self.thresholds.judge(window.series, score)
        total = float(errors.sum())
        shares = {
            f: (float(e) / total if total > 0 else 0.0) for f, e in zip(self.settings.features, errors, strict=True)
        }
        return Verdict(
            detector=self.settings.name,
            series=window.series,
            ts=window.end_ts,
            window_start=window.start_ts,
            score=score,
            threshold=judgement.threshold,
            anomalous=judgement.anomalous,
            warming_up=judgement.warming_up,
            labels=window.labels,
            feature_shares=shares,
        )


class Engine:
    """Routes points to detectors and scores what is ready; `unmatched` counts points no detector wants."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = list(detectors)
        self.unmatched = 0
        self._routes: dict[str, Detector | None] = {}

    def process(self, points: Iterable[Point]) -> Outcome:
        ready: dict[int, list[Window]] = {}
        for point in points:
            detector = self._route(point.series)
            if detector is None:
                self.unmatched += 1
                continue
            window = detector.windows.add(point)
            if window is not None:
                ready.setdefault(id(detector), []).append(window)
        outcome = Outcome()
        for detector in self.detectors:
            outcome.extend(detector.score(ready.get(id(detector), [])))
        return outcome

    def dropped(self) -> Counter[str]:
        """Points the windows refused (late, duplicate, missing feature, evicted series), by reason."""
        total: Counter[str] = Counter()
        for detector in self.detectors:
            total.update(detector.windows.dropped)
        return total

    def series_tracked(self) -> int:
        return sum(len(d.windows) for d in self.detectors)

    def _route(self, series: str) -> Detector | None:
        route = self._routes.get(series, _UNROUTED)
        if route is _UNROUTED:
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()  # a cache: ever-new series ids must not grow it without bound
            route = self._routes[series] = next((d for d in self.detectors if d.matches(series)), None)
        return route  # type: ignore[return-value]


def _check_compatible(settings: DetectorSettings, scorer: Scorer) -> None:
    """A model trained on other windows or features would score garbage: refuse it with both values."""
    if scorer.window != settings.window:
        raise ModelError(
            f"detector {settings.name!r}: model {scorer.version} has window {scorer.window}, "
            f"config says window {settings.window}"
        )
    if tuple(scorer.features) != tuple(settings.features):
        raise ModelError(
            f"detector {settings.name!r}: model {scorer.version} has features {list(scorer.features)}, "
            f"config says {list(settings.features)}"
        )
