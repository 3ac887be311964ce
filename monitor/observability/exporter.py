"""Prometheus metrics of the monitor. Only prometheus_client here; `monitor.observability.http` serves them.

Every exporter has its own registry, so tests and several detectors never collide in a global one.
Per-series gauges go through a collector that builds them at scrape time from the latest verdict of each
series, capped at `max_series`: every series with an open alert, then the highest scores. A cardinality
explosion in the input must not become one in Prometheus, and what the cap leaves out is counted.
Names follow Prometheus conventions: base units in the name, `_total` on counters (the client adds it).
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain, repeat
from typing import NamedTuple

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.utils import floatToGoString

from monitor.engine.verdicts import Outcome

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
SCORING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
ALERT_STATUSES = ("firing", "resolved")
VERDICTS = ("false_positive", "true_positive")

# The `*_created` series (process-wide switch) double the series count and no dashboard or rule needs them.
disable_created_metrics()
SERIES_LABELS = ["detector", "series"]


class _SeriesState(NamedTuple):
    """The latest verdict of a series, immutable, so a scrape can copy the references under the lock and
    build families outside it. The collector stores plain tuples of these fields (zipped from a batch's
    columns in C, no Python call per series); the scrape reads them as this. The values are a tuple, not a
    list: a tuple of floats leaves the garbage collector's care at its first pass, a list would be walked
    by every full pass as long as it is the series' latest."""

    score: float
    threshold: float
    features: tuple[str, ...]
    values: tuple[float, ...]


FOLD_ROWS = 65_536
"""Scored windows the collector holds as columns before it folds them into the latest state of each series
(more when it tracks more series than this): a scrape folds them anyway."""


class _Columns(NamedTuple):
    """The columns of a `VerdictBatch` the per-series gauges show."""

    series: list[str]
    score: np.ndarray
    threshold: np.ndarray
    values: np.ndarray


class _SeriesCollector:
    """Yields the capped per-series gauges, the open-alert count and the not-exported count.

    A poll's verdicts are kept as the batch's columns and folded into one state per series only at a
    scrape, an eviction or an alert, or once `FOLD_ROWS` windows wait: each fold builds the state of
    each series' last window only, so a replica catching up on a backlog, which scores many windows of a
    series between two scrapes, does not build one per window (docs/performance.md)."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.latest: dict[str, dict[str, tuple[float, float, tuple[str, ...], tuple[float, ...]]]] = {}
        """The latest verdict of each series folded in, by detector: the fields of `_SeriesState`."""
        self.waiting: dict[tuple[str, tuple[str, ...]], list[_Columns]] = {}
        """Verdicts not folded in yet, by detector and features, oldest first."""
        self.waiting_rows = 0
        self.open: set[tuple[str, str]] = set()
        """The (detector, series) pairs with an alert open."""
        self.detectors: set[str] = set()
        self.lock = threading.Lock()

    def observe(self, outcome: Outcome) -> None:
        with self.lock:
            if outcome.evicted:
                self._fold()
            for key in outcome.evicted:
                self.latest.get(key[0], {}).pop(key[1], None)
                self.open.discard(key)
            for b in outcome.batches:
                if len(b):
                    self.waiting.setdefault((b.detector, b.features), []).append(
                        _Columns(b.series, b.score, b.threshold, b.values)
                    )
                    self.waiting_rows += len(b)
            if outcome.alerts or self.waiting_rows > max(FOLD_ROWS, sum(map(len, self.latest.values()))):
                self._fold()
            for a in outcome.alerts:
                if a.series not in self.latest.get(a.detector, ()):  # not yet: a verdict dismissed a restored alert
                    continue
                if a.status == "firing":
                    self.open.add((a.detector, a.series))
                else:
                    self.open.discard((a.detector, a.series))

    def _fold(self) -> None:
        """The waiting verdicts into `latest`: each series' last window (call with the lock held)."""
        for (detector, features), waiting in self.waiting.items():
            series = list(chain.from_iterable(c.series for c in waiting))
            last = dict(zip(series, range(len(series)), strict=True))  # a series' last row overwrites the others
            scores = np.concatenate([c.score for c in waiting])
            thresholds = np.concatenate([c.threshold for c in waiting])
            values = np.concatenate([c.values for c in waiting])
            if len(last) < len(series):
                rows = np.fromiter(last.values(), np.intp, len(last))
                scores, thresholds, values = scores[rows], thresholds[rows], values[rows]
            states = zip(scores.tolist(), thresholds.tolist(), repeat(features), map(tuple, values.tolist()))
            self.latest.setdefault(detector, {}).update(zip(last, states, strict=True))
        self.waiting.clear()
        self.waiting_rows = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.lock:
            self._fold()
            items = [((detector, s), state) for detector, states in self.latest.items() for s, state in states.items()]
            open_keys = set(self.open)
            detectors = set(self.detectors)
        open_alerts = [(key, _SeriesState(*s)) for key, s in items if key in open_keys]
        room = max(self.max_series - len(open_alerts), 0)
        quiet = heapq.nlargest(room, (kv for kv in items if kv[0] not in open_keys), key=lambda kv: kv[1][0])
        kept = open_alerts + [(key, _SeriesState(*s)) for key, s in quiet]

        score = GaugeMetricFamily(
            "anomaly_score", "Latest anomaly score of the series (reconstruction error)", labels=SERIES_LABELS
        )
        threshold = GaugeMetricFamily(
            "anomaly_threshold", "Current threshold of the series' anomaly score", labels=SERIES_LABELS
        )
        active = GaugeMetricFamily("anomaly_active", "1 while an alert is open for the series", labels=SERIES_LABELS)
        value = GaugeMetricFamily(
            "anomaly_value",
            "Newest value of each feature of the series, at the end of its last scored window",
            labels=[*SERIES_LABELS, "feature"],
        )
        for key, s in kept:
            detector, series = key
            score.add_metric([detector, series], s.score)
            threshold.add_metric([detector, series], s.threshold)
            active.add_metric([detector, series], 1.0 if key in open_keys else 0.0)
            for feature, v in zip(s.features, s.values, strict=True):
                value.add_metric([detector, series, feature], v)

        firing = GaugeMetricFamily(
            "monitor_alerts_open", "Alerts firing and not yet resolved, by detector", labels=["detector"]
        )
        per_detector = Tally(detector for (detector, _), _ in open_alerts)
        for detector in sorted(detectors | set(per_detector)):
            firing.add_metric([detector], per_detector[detector])
        dropped = GaugeMetricFamily(
            "monitor_series_not_exported", "Series left out of the per-series gauges by exporter.max_series"
        )
        dropped.add_metric([], len(items) - len(kept))
        yield from (score, threshold, active, value, firing, dropped)


class BatchHistogram:
    """A histogram observed a whole poll at a time: one numpy call instead of one `observe` per record."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype=float)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        """Observations per bucket (not cumulative), the last one above every bound (+Inf)."""
        self.total = 0.0
        self.lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        if not len(values):
            return
        per_bucket = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts))
        with self.lock:
            self.counts += per_bucket
            self.total += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self.lock:
            cumulative, total = np.cumsum(self.counts).tolist(), self.total
        bounds = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=list(zip(bounds, cumulative, strict=True)), sum_value=total
        )


class Exporter:
    """The monitor's metrics; the service calls the `observe_*`/`set_*` methods, Prometheus scrapes."""

    def __init__(self, max_series: int = 2000, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.series = _SeriesCollector(max_series)
        r.register(self.series)  # type: ignore[arg-type]
        ProcessCollector(registry=r)  # process_*: resident memory, CPU, open files of the daemon itself
        self.messages = Counter(
            "monitor_messages",
            "Input messages by topic and outcome (ok or a rejection reason)",
            ["topic", "outcome"],
            registry=r,
        )
        self.points_dropped = Counter(
            "monitor_points_dropped", "Decoded points not used, by reason", ["reason"], registry=r
        )
        self.windows = Counter("monitor_windows_scored", "Windows scored", ["detector"], registry=r)
        self.alerts = Counter("monitor_alerts", "Alert events published", ["detector", "status"], registry=r)
        self.feedback = Counter(
            "monitor_feedback", "Verdicts on alerts taken from the feedback topic", ["detector", "verdict"], registry=r
        )
        self.precision = Gauge(
            "monitor_feedback_precision",
            "Share of the latest judged alerts (alerting.precision_verdicts) that a person confirmed",
            ["detector"],
            registry=r,
        )
        self.scoring = Histogram(
            "monitor_scoring_seconds",
            "Time of one batched scoring call",
            ["detector"],
            buckets=SCORING_BUCKETS,
            registry=r,
        )
        self.latency = BatchHistogram(
            "monitor_end_to_end_latency_seconds",
            "From record timestamp to alerts flushed and offsets committed",
            LATENCY_BUCKETS,
        )
        r.register(self.latency)  # type: ignore[arg-type]
        self.lag = Gauge("monitor_consumer_lag", "Records behind the log end", ["topic", "partition"], registry=r)
        self.tracked = Gauge("monitor_series_tracked", "Series with a window buffer", ["detector"], registry=r)
        self.warming_up = Gauge(
            "monitor_series_warming_up",
            "Tracked series that cannot alert yet: window still filling or threshold warm-up",
            ["detector"],
            registry=r,
        )
        self.model = Gauge(
            "monitor_model_info",
            "The model serving each detector",
            ["detector", "version", "kind"],
            registry=r,
        )
        self.last_commit = Gauge(
            "monitor_last_commit_timestamp_seconds", "Unix time of the last offset commit", registry=r
        )
        self.last_poll = Gauge(
            "monitor_last_poll_timestamp_seconds",
            "Unix time the run loop last polled its source; it stops moving when the loop is stuck",
            registry=r,
        )
        self.last_poll.set_to_current_time()  # the start counts, so a slow start does not look stuck

    def observe_outcome(self, outcome: Outcome) -> None:
        self.series.observe(outcome)
        for batch in outcome.batches:
            self.windows.labels(batch.detector).inc(len(batch))
        for a in outcome.alerts:
            self.alerts.labels(a.detector, a.status).inc()

    def set_model(self, detector: str, version: str, kind: str) -> None:
        """Exactly one info series per detector: the previous version's disappears on a swap.

        The detector's counters start at zero here, so `rate()` and `increase()` see the first event
        instead of a series that appears already at 1.
        """
        for labels in [s.labels for m in self.model.collect() for s in m.samples]:
            if labels["detector"] == detector:
                self.model.remove(labels["detector"], labels["version"], labels["kind"])
        self.model.labels(detector, version, kind).set(1)
        self.windows.labels(detector)
        self.scoring.labels(detector)
        for status in ALERT_STATUSES:
            self.alerts.labels(detector, status)
        for verdict in VERDICTS:
            self.feedback.labels(detector, verdict)
        with self.series.lock:
            first = detector not in self.series.detectors
            self.series.detectors.add(detector)
        if first:  # NaN until the first verdict; a model swap keeps the value
            self.precision.labels(detector).set(float("nan"))

    def expect_topic(self, topic: str, outcomes: Iterable[str]) -> None:
        """Start the topic's message counters at zero, so `rate()` sees the first rejection of a kind."""
        for outcome in outcomes:
            self.messages.labels(topic, outcome)

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Lag of the partitions assigned now; those moved to another replica stop being reported."""
        current = {(topic, str(partition)): lag for (topic, partition), lag in lags.items()}
        for labels in [s.labels for m in self.lag.collect() for s in m.samples]:
            if (labels["topic"], labels["partition"]) not in current:
                self.lag.remove(labels["topic"], labels["partition"])
        for (topic, partition), lag in current.items():
            self.lag.labels(topic, partition).set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)
