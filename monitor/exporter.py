"""Prometheus metrics and the HTTP endpoints `/metrics`, `/healthz`, `/readyz`. Only prometheus_client here.

Every exporter has its own registry, so tests and several detectors never collide in a global one.
Per-series gauges go through a collector that keeps at most `max_series` label sets at scrape time: those
with an open alert first, then the highest scores. A cardinality explosion in the input must not become
one in Prometheus.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from monitor.detector import Outcome

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
SCORING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass(slots=True)
class _SeriesGauge:
    score: float
    threshold: float
    active: bool


class _SeriesCollector:
    """Yields the capped per-series gauges at scrape time."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.latest: dict[tuple[str, str], _SeriesGauge] = {}
        self.dropped = 0
        self.lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.lock:
            ranked = sorted(self.latest.items(), key=lambda kv: (kv[1].active, kv[1].score), reverse=True)
        kept = ranked[: self.max_series]
        self.dropped = len(ranked) - len(kept)
        families = {
            "score": GaugeMetricFamily("anomaly_score", "Latest anomaly score of the series", labels=_LABELS),
            "threshold": GaugeMetricFamily(
                "anomaly_threshold", "Current threshold of the series' anomaly score", labels=_LABELS
            ),
            "active": GaugeMetricFamily("anomaly_active", "1 while an alert is firing for the series", labels=_LABELS),
        }
        for (detector, series), g in kept:
            families["score"].add_metric([detector, series], g.score)
            families["threshold"].add_metric([detector, series], g.threshold)
            families["active"].add_metric([detector, series], 1.0 if g.active else 0.0)
        dropped = GaugeMetricFamily(
            "monitor_series_not_exported", "Series left out of the per-series gauges by exporter.max_series"
        )
        dropped.add_metric([], self.dropped)
        yield from (*families.values(), dropped)


_LABELS = ["detector", "series"]


class Exporter:
    """The monitor's metrics; the service calls the `observe_*` methods, Prometheus scrapes."""

    def __init__(self, max_series: int = 2000, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.series = _SeriesCollector(max_series)
        r.register(self.series)  # type: ignore[arg-type]
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
        self.scoring = Histogram(
            "monitor_scoring_seconds",
            "Time of one batched scoring call",
            ["detector"],
            buckets=SCORING_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "monitor_end_to_end_latency_seconds",
            "From record timestamp to alerts flushed and offsets committed",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge("monitor_consumer_lag", "Records behind the log end", ["topic", "partition"], registry=r)
        self.tracked = Gauge("monitor_series_tracked", "Series with a window buffer", ["detector"], registry=r)
        self.model = Gauge(
            "monitor_model_info",
            "The model serving each detector",
            ["detector", "version", "kind"],
            registry=r,
        )
        self.last_commit = Gauge(
            "monitor_last_commit_timestamp_seconds", "Unix time of the last offset commit", registry=r
        )

    def observe_outcome(self, outcome: Outcome) -> None:
        with self.series.lock:
            for v in outcome.verdicts:
                key = (v.detector, v.series)
                previous = self.series.latest.get(key)
                active = previous.active if previous else False
                self.series.latest[key] = _SeriesGauge(v.score, v.threshold, active)
            for a in outcome.alerts:
                self.series.latest[(a.detector, a.series)].active = a.status == "firing"
        for v in outcome.verdicts:
            self.windows.labels(v.detector).inc()
        for a in outcome.alerts:
            self.alerts.labels(a.detector, a.status).inc()

    def forget_series(self, detector: str, series: str) -> None:
        with self.series.lock:
            self.series.latest.pop((detector, series), None)

    def set_model(self, detector: str, version: str, kind: str) -> None:
        """Exactly one info series per detector: the previous version's disappears on a swap."""
        for labels in [s.labels for m in self.model.collect() for s in m.samples]:
            if labels["detector"] == detector:
                self.model.remove(labels["detector"], labels["version"], labels["kind"])
        self.model.labels(detector, version, kind).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Health:
    """What `/healthz` and `/readyz` answer: alive while the loop polls, ready when it can do its job."""

    def __init__(self, stuck_after_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stuck_after_s = stuck_after_s
        self.clock = clock
        self.last_poll = clock()
        self.ready = False
        self.reason = "starting"

    def polled(self) -> None:
        self.last_poll = self.clock()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self.ready, self.reason = ready, reason

    def alive(self) -> tuple[bool, str]:
        idle = self.clock() - self.last_poll
        if idle > self.stuck_after_s:
            return False, f"no poll for {idle:.0f}s"
        return True, "ok"


def serve(exporter: Exporter, health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Start the HTTP endpoint in a daemon thread; returns the server (its `server_port` is the bound port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, exporter.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, why = health.alive()
                self._send(200 if ok else 503, why.encode() + b"\n")
            elif path == "/readyz":
                self._send(200 if health.ready else 503, (health.reason or "ready").encode() + b"\n")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
