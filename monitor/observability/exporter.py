"""Prometheus metrics of the monitor. Only prometheus_client here; `monitor.observability.http` serves them.

Every exporter has its own registry, so tests and several detectors never collide in a global one.
Per-series gauges go through a collector that builds them at scrape time from the latest verdict of each
series, capped at `max_series`: every series with an open alert, then the highest scores. A cardinality
explosion in the input must not become one in Prometheus, and what the cap leaves out is counted.
Names follow Prometheus conventions: base units in the name, `_total` on counters (the client adds it).
"""

from __future__ import annotations

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


FOLD_ROWS = 65_536
"""Scored windows the collector holds as columns before it folds them into the latest state of each series
(more when it tracks more series than this): a scrape folds them anyway."""


class _Columns(NamedTuple):
    """The columns of a `VerdictBatch` the per-series gauges show."""

    series: list[str]
    score: np.ndarray
    threshold: np.ndarray
    values: np.ndarray


class _Latest:
    """The latest folded verdict of each series of one detector (and feature set), a row per series in
    columns: a fold costs one dict lookup per window and a few numpy calls, at 100,000 series too, where
    almost every window of a fold is of another series (a state tuple per series cost 0.8 µs a window
    there); and a series costs a row of floats, no Python objects the garbage collector walks."""

    def __init__(self, features: tuple[str, ...]) -> None:
        self.features = features
        self.rows: dict[str, int] = {}
        self.names: list[str | None] = []
        """The series of each row (None: free)."""
        self.free: list[int] = []
        """Rows of series that left, for the next new ones."""
        self.score, self.threshold = np.empty(0), np.empty(0)
        self.values = np.empty((0, len(features)))

    def __len__(self) -> int:
        return len(self.rows)

    def fold(self, batch: _Columns) -> list[str]:
        """Each series' last row of the batch becomes its latest; returns the series new here."""
        rows = np.fromiter(map(self.rows.get, batch.series, repeat(-1)), np.intp, len(batch.series))
        new = []
        for i in np.flatnonzero(rows < 0).tolist():
            name = batch.series[i]
            if name not in self.rows:
                new.append(name)
                self.rows[name] = self._row(name)
            rows[i] = self.rows[name]
        kept, first = np.unique(rows[::-1], return_index=True)
        last = len(rows) - 1 - first  # numpy does not promise which of repeated assignments wins
        self.score[kept], self.threshold[kept] = batch.score[last], batch.threshold[last]
        self.values[kept] = batch.values[last]
        return new

    def drop(self, series: str) -> None:
        row = self.rows.pop(series, None)
        if row is not None:
            self.names[row] = None
            self.free.append(row)

    def _row(self, series: str) -> int:
        if self.free:
            row = self.free.pop()
            self.names[row] = series
            return row
        row = len(self.names)
        self.names.append(series)
        if row == len(self.score):
            size = max(64, 2 * row)
            self.score, self.threshold = np.resize(self.score, size), np.resize(self.threshold, size)
            self.values = np.resize(self.values, (size, len(self.features)))
        return row

    def copy(self) -> _Table:
        """What a scrape reads, copied under the lock to be read outside it."""
        return _Table(
            self.features,
            dict(self.rows),
            list(self.names),
            self.score.copy(),
            self.threshold.copy(),
            self.values.copy(),
        )


class _Table(NamedTuple):
    """A copy of one `_Latest`; `rows` maps each tracked series to its row of the arrays."""

    features: tuple[str, ...]
    rows: dict[str, int]
    names: list[str | None]
    score: np.ndarray
    threshold: np.ndarray
    values: np.ndarray


class _SeriesCollector:
    """Yields the capped per-series gauges, the open-alert count and the not-exported count.

    A poll's verdicts are kept as the batch's columns and folded into one state per series only at a
    scrape, an eviction or an alert, or once `FOLD_ROWS` windows wait: each fold writes the state of
    each series' last window only, so a replica catching up on a backlog, which scores many windows of a
    series between two scrapes, does not build one per window (docs/performance.md)."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.latest: dict[str, dict[tuple[str, ...], _Latest]] = {}
        """The latest verdict of each series folded in, by detector and features."""
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
            for detector, series in outcome.evicted:
                for table in self.latest.get(detector, {}).values():
                    table.drop(series)
                self.open.discard((detector, series))
            for b in outcome.batches:
                if len(b):
                    self.waiting.setdefault((b.detector, b.features), []).append(
                        _Columns(b.series, b.score, b.threshold, b.values)
                    )
                    self.waiting_rows += len(b)
            if outcome.alerts or self.waiting_rows > max(FOLD_ROWS, self._tracked()):
                self._fold()
            for a in outcome.alerts:
                if not self._tracks(a.detector, a.series):  # not yet: a verdict dismissed a restored alert
                    continue
                if a.status == "firing":
                    self.open.add((a.detector, a.series))
                else:
                    self.open.discard((a.detector, a.series))

    def _tracked(self) -> int:
        return sum(len(t) for tables in self.latest.values() for t in tables.values())

    def _tracks(self, detector: str, series: str) -> bool:
        return any(series in t.rows for t in self.latest.get(detector, {}).values())

    def _fold(self) -> None:
        """The waiting verdicts into `latest`: each series' last window (call with the lock held)."""
        for (detector, features), waiting in self.waiting.items():
            tables = self.latest.setdefault(detector, {})
            table = tables.setdefault(features, _Latest(features))
            batch = _Columns(
                list(chain.from_iterable(c.series for c in waiting)),
                np.concatenate([c.score for c in waiting]),
                np.concatenate([c.threshold for c in waiting]),
                np.concatenate([c.values for c in waiting]),
            )
            for series in table.fold(batch):  # a series whose features changed (a new model) moves
                for other in tables.values():
                    if other is not table:
                        other.drop(series)
        self.waiting.clear()
        self.waiting_rows = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.lock:
            self._fold()
            tables = [(d, t.copy()) for d, by_features in self.latest.items() for t in by_features.values()]
            open_keys = set(self.open)
            detectors = set(self.detectors)
        kept, dropped = _kept(tables, open_keys, self.max_series)

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
        for detector, series, features, s, t, values in kept:
            score.add_metric([detector, series], s)
            threshold.add_metric([detector, series], t)
            active.add_metric([detector, series], 1.0 if (detector, series) in open_keys else 0.0)
            for feature, v in zip(features, values, strict=True):
                value.add_metric([detector, series, feature], v)

        firing = GaugeMetricFamily(
            "monitor_alerts_open", "Alerts firing and not yet resolved, by detector", labels=["detector"]
        )
        per_detector = Tally(detector for detector, series, *_ in kept if (detector, series) in open_keys)
        for detector in sorted(detectors | set(per_detector)):
            firing.add_metric([detector], per_detector[detector])
        not_exported = GaugeMetricFamily(
            "monitor_series_not_exported", "Series left out of the per-series gauges by exporter.max_series"
        )
        not_exported.add_metric([], dropped)
        yield from (score, threshold, active, value, firing, not_exported)


def _kept(
    tables: list[tuple[str, _Table]], open_keys: set[tuple[str, str]], max_series: int
) -> tuple[list[tuple[str, str, tuple[str, ...], float, float, list[float]]], int]:
    """The series a scrape exports, as (detector, series, features, score, threshold, values), and how many
    it leaves out: every series with an open alert, then the highest scores (NaN last) up to `max_series`
    in all, found without sorting every series."""
    kept, which, rows = [], [], []
    for n, (detector, table) in enumerate(tables):
        opened = [table.rows[s] for d, s in open_keys if d == detector and s in table.rows]
        kept += [(n, row) for row in opened]
        quiet = np.setdiff1d(np.fromiter(table.rows.values(), np.intp, len(table.rows)), opened)
        which.append(np.full(len(quiet), n))
        rows.append(quiet)
    if tables:
        which_all, rows_all = np.concatenate(which), np.concatenate(rows)
        scores = np.concatenate([table.score[r] for (_, table), r in zip(tables, rows, strict=True)])
        ranked = np.where(np.isnan(scores), -np.inf, scores)
        room = max(max_series - len(kept), 0)
        top = np.argpartition(-ranked, room)[:room] if room < len(ranked) else np.arange(len(ranked))
        top = top[np.argsort(-ranked[top], kind="stable")]
        kept += zip(which_all[top].tolist(), rows_all[top].tolist(), strict=True)
    out = []
    for n, row in kept:
        detector, t = tables[n]
        name = t.names[row]
        assert name is not None  # a tracked row
        out.append((detector, name, t.features, float(t.score[row]), float(t.threshold[row]), t.values[row].tolist()))
    return out, sum(len(t.rows) for _, t in tables) - len(out)


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
