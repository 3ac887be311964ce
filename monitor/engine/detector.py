"""The engine: points in, verdicts and alert events out. No I/O: sources and sinks live in the service.

A `Detector` owns the series that match its selector: their windows, thresholds and alert state, and
one `Scorer`. The `Engine` routes each point to the first detector whose selector matches and scores
every detector's ready windows in one batched call per `process` (one poll), never one call per window.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from itertools import repeat
from queue import SimpleQueue
from typing import Any

from monitor.engine.alerting import AlertSettings, AlertTracker
from monitor.engine.columns import Columns, PointList, parts_of, tracked_names
from monitor.engine.entities import EntityAssembler, Selector
from monitor.engine.feedback import FeedbackBook
from monitor.engine.scoring import Scorer
from monitor.engine.slots import rounds
from monitor.engine.threshold import ThresholdBank, ThresholdSettings
from monitor.engine.verdicts import Outcome, VerdictBatch
from monitor.engine.windows import PointRules, WindowStore
from monitor.errors import ModelError
from monitor.records import Alert, Feedback, Point, PointColumns, Rejected, WindowBatch

_UNROUTED = object()

Routed = tuple[Point, "Detector | None"]
"""A point and the detector that owns its series (None: no detector wants it)."""
Ready = dict["Detector", WindowBatch]
"""Each detector's windows that came due in a poll (`Engine.window`), waiting for `Engine.score`."""


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    name: str = "default"
    series: str = "*"
    """Glob over series ids (`web-*/cpu`); the first detector that matches a series owns it."""
    features: tuple[str, ...] = ("value",)
    window: int = 32
    stride: int = 1
    max_series: int = 100_000
    threshold: ThresholdSettings = field(default_factory=ThresholdSettings)
    alerting: AlertSettings = field(default_factory=AlertSettings)
    points: PointRules = field(default_factory=PointRules)
    labels: tuple[tuple[str, str], ...] = ()
    """Labels a series must carry (all of them, equal values) besides matching `series`."""
    entity_label: str | None = None
    """Join univariate series that share this label into one entity (see `monitor.engine.entities`)."""


class Detector:
    def __init__(self, settings: DetectorSettings, scorer: Scorer) -> None:
        _check_compatible(settings, scorer)
        self.settings = settings
        self.scorer = scorer
        self.thresholds = ThresholdBank(settings.threshold, scorer.baseline_scores())
        self.alerts = AlertTracker(settings.name, settings.alerting)
        self.feedback = FeedbackBook(settings.alerting.precision_verdicts)
        self.windows = WindowStore(
            settings.window, settings.stride, settings.features, settings.max_series, self._forget, settings.points
        )
        self._evicted: SimpleQueue[str] = SimpleQueue()
        """Series the windows evicted, forgotten by the next `score`: with `scoring.overlap` that runs in
        the scoring thread, and the thresholds and alerts belong to it while the next poll is read."""
        self.selector = Selector(settings.series, settings.labels, settings.entity_label, settings.features)
        self.entities = (
            EntityAssembler(settings.entity_label, settings.features, settings.max_series)
            if settings.entity_label
            else None
        )

    def matches(self, series: str, labels: Mapping[str, str] | None = None) -> bool:
        return self.selector.matches(series, labels or {})

    def refuse(self, point: Point) -> Rejected | None:
        """Why a point of a series this detector owns cannot be used at all (it lacks features), so the
        service can dead-letter its message; None when it can. An entity's series carry one feature each."""
        if self.entities is not None:
            return None
        values = point.values
        for feature in self.settings.features:
            if feature not in values:
                break
        else:
            return None
        missing = [f for f in self.settings.features if f not in values]
        return Rejected(
            "missing_feature", f"series {point.series!r} lacks {missing} of detector {self.settings.name!r}"
        )

    def swap_scorer(self, scorer: Scorer) -> None:
        """Serve another model from the next window on (hot reload), keeping windows, thresholds and alerts;
        series first seen after the swap are seeded with the new model's validation scores.

        A model with another window or feature list is refused with a `ModelError` naming both, and the
        current one keeps serving.
        """
        _check_compatible(self.settings, scorer)
        self.scorer = scorer
        self.thresholds.reseed(scorer.baseline_scores())

    def score(self, windows: WindowBatch) -> Outcome:
        """Score a batch of windows in one call and run each result through threshold and alerting."""
        outcome = Outcome()
        while not self._evicted.empty():
            series = self._evicted.get()
            self.thresholds.forget(series)
            self.alerts.forget(series)
            self.feedback.forget(series)
            outcome.evicted.append((self.settings.name, series))
        if not len(windows):
            return outcome
        data = windows.data
        started = time.perf_counter()
        result = self.scorer.score(windows.series, data, windows.start, windows.end)
        outcome.scoring_seconds[self.settings.name] = time.perf_counter() - started
        batch = VerdictBatch.empty(
            self.settings.name, self.settings.features, windows.series, windows.labels, windows.start,
            windows.end, data[:, -1, :].copy(), result.feature_errors,
        )  # fmt: skip
        events: list[tuple[int, Alert]] = []
        # Round k judges the k-th window of every series, after its earlier ones (a threshold learns from each).
        for rows in rounds(windows.series):
            provisional = None if result.provisional is None else result.provisional[rows]
            judged = self.thresholds.judge_many([windows.series[i] for i in rows], result.scores[rows], provisional)
            batch.score[rows], batch.threshold[rows] = judged.score, judged.threshold
            batch.anomalous[rows], batch.warming_up[rows] = judged.anomalous, judged.warming_up
            events.extend(self.alerts.observe_many(batch, rows, self.scorer.version))
        outcome.batches.append(batch)
        outcome.alerts.extend(alert for _, alert in sorted(events, key=lambda e: e[0]))
        return outcome

    def judge(self, feedback: Feedback, at: float) -> tuple[bool, Alert | None]:
        """Take a person's verdict given at `at`: whether it is new (not a replay), and the alert it
        dismissed. A false positive of the series' open alert resolves it as dismissed, and the windows of
        its anomalous run become normal data for the thresholds (and, through the dismissed alert, for
        scheduled retraining), so the same pattern stops alerting on that series."""
        if not self.feedback.record(feedback, at):
            return False, None
        if feedback.verdict != "false_positive":
            return True, None
        dismissed = self.alerts.dismiss(feedback.series, feedback.alert_id, feedback.by)
        if dismissed is not None:
            self.thresholds.accept(feedback.series)
        return True, dismissed

    def warming_up(self) -> int:
        """Tracked series that cannot alert yet (window still filling, or threshold warm-up): the usual
        answer to "why is there no output?"."""
        return len(self.windows) - self.thresholds.judged_enough()

    def snapshot(self, series: str) -> dict[str, Any] | None:
        """Everything the detector keeps about a series or entity (None if untracked), for a checkpoint;
        an entity's rows still waiting for features included."""
        window = self.windows.snapshot(series)
        rows = self.entities.snapshot(series) if self.entities is not None else []
        if window is None and not rows:
            return None
        state = {
            "model_version": self.scorer.version,
            "window": window,
            "threshold": self.thresholds.snapshot(series),
            "alert": self.alerts.snapshot(series),
            "scorer": self._scorer_state(series),
            "feedback": self.feedback.snapshot(series),
        }
        return {**state, "entity_rows": rows} if self.entities is not None else state

    def restore(self, series: str, state: Mapping[str, Any]) -> None:
        """Take a series back from `snapshot`. Threshold statistics learnt on another model's scores do
        not carry over (the series warms up again); ValueError if the window does not fit."""
        if self.entities is not None:
            self.entities.restore(series, state.get("entity_rows", ()))
        self.windows.forget(series)
        if state["window"] is not None:
            self.windows.restore(series, state["window"])
        self.thresholds.forget(series)
        if state["threshold"] is not None and state["model_version"] == self.scorer.version:
            self.thresholds.restore(series, state["threshold"])
        self.alerts.forget(series)
        if state["alert"] is not None:
            self.alerts.restore(series, state["alert"])
        self.feedback.forget(series)
        if state.get("feedback"):
            self.feedback.restore(series, state["feedback"])
        restore = getattr(self.scorer, "restore_series", None)
        if state.get("scorer") is not None and restore is not None:
            restore(series, state["scorer"])

    def _scorer_state(self, series: str) -> dict[str, Any] | None:
        """What a scorer that learns per series (`series_state`/`restore_series`: the online normalisation of
        series the model never saw) knows about this one; scorers without it keep nothing per series."""
        state = getattr(self.scorer, "series_state", None)
        return None if state is None else state(series)

    def forget(self, series: str) -> None:
        """Let a series go without counting an eviction: its partition moved to another replica."""
        if self.entities is not None:
            self.entities.forget(series)
        self.windows.forget(series)
        self.thresholds.forget(series)
        self.alerts.forget(series)
        self.feedback.forget(series)

    def _forget(self, series: str) -> None:
        """An evicted series leaves nothing behind, so memory stays bounded by `max_series`."""
        self._evicted.put(series)


class Engine:
    """Routes points to detectors and scores what is ready; `unmatched` counts points no detector wants."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = list(detectors)
        self.unmatched = 0
        self._routes: dict[str, Detector | None] = {}
        self._owner_of_all = self.detectors[0] if self.detectors and self.detectors[0].selector.everything else None
        """The first detector, when it takes every series (the shipped `*`): no route is looked up then, as
        a lookup in a dict of 100,000 series costs a cache miss or two (0.3 to 0.5 us) a point."""
        self._max_routes = 2 * sum(d.settings.max_series for d in self.detectors) + 1000
        """Routes of evicted series go with them; this bounds the ids that no detector wants."""

    def process(self, points: Iterable[Point]) -> Outcome:
        """Route and window the points, score what became due, judge it: one poll, start to end."""
        return self.finish(self.start(self.routed(points)))

    def routed(self, points: Iterable[Point]) -> list[Routed]:
        """Each point with the detector that owns its series (None: no detector wants it)."""
        route = self.owner
        return [(point, route(point.series, point.labels)) for point in points]

    def start(self, points: Iterable[Routed], executor: Executor | None = None) -> list[Future[Outcome]]:
        """Window the routed points, then score and judge the due windows (`window`, then `score`)."""
        return self.score(self.window(points), executor)

    def window(self, points: Iterable[Routed]) -> Ready:
        """Window the routed points: each detector's due windows, copied out, for `score`.

        The points come routed (`routed`, or the service's decoding, which looks each series up once for
        its checks, the checkpoint and the windows: at 100,000 series a lookup is not free)."""
        routed: dict[Detector, list[Point]] = {d: [] for d in self.detectors}
        for point, detector in points:
            if detector is None:
                self.unmatched += 1
            elif detector.entities is None:
                routed[detector].append(point)
            elif (joined := detector.entities.add(point)) is not None:  # None: no entity point complete yet
                routed[detector].append(joined)
        ready = self._batches()
        for detector in self.detectors:
            detector.windows.collect_many(routed[detector], ready[detector])
        return ready

    def columns(self, points: list[Point] | PointColumns) -> Columns | None:
        """The poll as columns (`monitor.engine.columns`) when all its points are of series already routed,
        to no detector or to one without entities that tracks them, each with its detector's features; None
        otherwise, when `start` routes, checks and counts them one by one. Looks things up only."""
        taken = PointList(points) if isinstance(points, list) else points
        series = taken.series
        if self._owner_of_all is not None:
            owners: list[Detector | None] = [self._owner_of_all] * len(series)
            distinct: list[Detector | None] = [self._owner_of_all]
        else:
            owners = list(map(self._routes.get, series, repeat(_UNROUTED)))
            distinct = list(dict.fromkeys(owners))
        if _UNROUTED in distinct or any(d is not None and d.entities is not None for d in distinct):
            return None
        parts = parts_of(taken, owners, distinct)
        if parts is None:
            return None
        return Columns(taken, tracked_names(series, parts), owners, parts)

    def window_columns(self, columns: Columns) -> Ready:
        """`window` for a poll in columns: the same windows, without Python per point."""
        ready = self._batches()
        self.unmatched += columns.unmatched
        for part in columns.parts:
            series, ts = columns.of(part)
            part.detector.windows.collect_columns(series, part.slots, ts, part.values, ready[part.detector])
        return ready

    def _batches(self) -> Ready:
        return {d: WindowBatch(d.settings.window, len(d.settings.features)) for d in self.detectors}

    def score(self, ready: Ready, executor: Executor | None = None) -> list[Future[Outcome]]:
        """Score and judge every detector's due windows (an empty batch too: it forgets the series
        evicted), in `executor`'s thread when given: the caller reads the next poll meanwhile (torch
        releases the GIL while it computes). The windows are copies: windowing the next poll while
        these are scored changes nothing about them."""
        futures = []
        for detector in self.detectors:
            if executor is not None:
                futures.append(executor.submit(detector.score, ready[detector]))
            else:
                futures.append(Future())
                futures[-1].set_result(detector.score(ready[detector]))
        return futures

    def finish(self, started: list[Future[Outcome]]) -> Outcome:
        """Wait for what `start` began; a scoring error (a model that does not fit) is raised here."""
        outcome = Outcome()
        for future in started:
            outcome.extend(future.result())
        for _, series in outcome.evicted:
            self._routes.pop(series, None)
        return outcome

    def dropped(self) -> Counter[str]:
        """Points the windows refused (late, duplicate, missing feature, evicted series), by reason."""
        total: Counter[str] = Counter()
        for detector in self.detectors:
            total.update(detector.windows.dropped)
            if detector.entities is not None:
                total.update(detector.entities.dropped)
        return total

    def adjusted(self) -> Counter[str]:
        """Points the rules changed (reordered, duplicate_replaced, gap_filled, gap_reset), by reason."""
        total: Counter[str] = Counter()
        for detector in self.detectors:
            total.update(detector.windows.adjusted)
        return total

    def series_tracked(self) -> int:
        return sum(len(d.windows) for d in self.detectors)

    def keeps(self, detector: Detector, key: str, labels: Mapping[str, str]) -> bool:
        """Whether `detector` still owns the state kept under `key` (a series, or an entity of these labels)."""
        if detector.entities is not None:
            return detector in self.detectors and labels.get(detector.entities.entity_label) == key
        return self.owner(key, labels) is detector

    def owner(self, series: str, labels: Mapping[str, str] | None = None) -> Detector | None:
        """The detector a series belongs to, if any: decided on its first point (`labels` included) and
        cached by series id; the first detector at once when it takes every series."""
        if self._owner_of_all is not None:
            return self._owner_of_all
        route = self._routes.get(series, _UNROUTED)
        if route is _UNROUTED:
            if len(self._routes) >= self._max_routes:
                self._routes.clear()  # a cache: ever-new series ids must not grow it without bound
            route = self._routes[series] = next((d for d in self.detectors if d.matches(series, labels)), None)
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
