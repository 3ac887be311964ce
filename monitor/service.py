"""The run loop: poll → decode → detect → publish → flush → commit → export.

Sources and sinks are small protocols so the same loop serves Kafka and files. The order of the last
steps is the delivery guarantee: offsets are committed only after the sink has flushed the alerts and
dead letters of the polled records, so a crash anywhere replays records rather than losing them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from monitor.decoding import decode_json
from monitor.detector import Engine, Outcome
from monitor.exporter import Exporter, Health
from monitor.records import Alert, Message, Point, Rejected, format_ts

log = logging.getLogger(__name__)


class Source(Protocol):
    def poll(self) -> list[Message] | None:
        """A batch of messages (maybe empty); None when a finite source is exhausted."""
        ...

    def assigned(self) -> bool: ...

    def commit(self) -> None: ...

    def lag(self) -> dict[tuple[str, int], int]: ...

    def close(self) -> None: ...


class Sink(Protocol):
    def publish(self, alert: Alert) -> None: ...

    def dead_letter(self, message: Message, rejected: Rejected) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Summary:
    """What a run did, printed at the end and used by the demo and the tests."""

    messages: int = 0
    points: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    windows_scored: int = 0
    alerts: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        rejected = sum(self.rejected.values())
        return (
            f"messages={self.messages} points={self.points} rejected={rejected} "
            f"windows_scored={self.windows_scored} alerts_firing={self.alerts['firing']} "
            f"alerts_resolved={self.alerts['resolved']}"
        )


class Service:
    def __init__(
        self,
        engine: Engine,
        source: Source,
        sink: Sink,
        exporter: Exporter,
        health: Health,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        self.engine, self.source, self.sink = engine, source, sink
        self.exporter, self.health = exporter, health
        self.max_message_bytes = max_message_bytes
        self.summary = Summary()
        self.stop = threading.Event()
        self._dropped_seen: Counter[str] = Counter()

    def run(self, duration_s: float | None = None) -> Summary:
        """Loop until stopped (signal, duration, or a finite source running out), then flush and commit."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not self.stop.is_set() and (deadline is None or time.monotonic() < deadline):
                messages = self.source.poll()
                self.health.polled()
                if messages is None:
                    break
                self.step(messages)
        finally:
            self.sink.flush()
            self.source.close()
            self.sink.close()
        return self.summary

    def step(self, messages: list[Message]) -> None:
        """Process one polled batch completely, up to the commit."""
        points = self._decode(messages)
        outcome = self.engine.process(points)
        for alert in outcome.alerts:
            self.sink.publish(alert)
            log.info(
                "alert %s %s id=%s started_at=%s score=%.4f threshold=%.4f severity=%s",
                alert.status,
                alert.series,
                alert.alert_id,
                format_ts(alert.started_at),
                alert.score,
                alert.threshold,
                alert.severity,
            )
        self.sink.flush()
        if messages:
            self.source.commit()
            self.exporter.last_commit.set_to_current_time()
        self._observe(messages, points, outcome)
        self.health.set_ready(self.source.assigned(), "" if self.source.assigned() else "no partitions assigned")

    def _decode(self, messages: list[Message]) -> list[Point]:
        points: list[Point] = []
        for message in messages:
            decoded = decode_json(message.value, message.timestamp, self.max_message_bytes)
            if isinstance(decoded, Rejected):
                self._reject(message, decoded)
            else:
                points.extend(decoded)
                self.exporter.messages.labels(message.topic, "ok").inc()
        return points

    def _reject(self, message: Message, rejected: Rejected) -> None:
        self.summary.rejected[rejected.reason] += 1
        self.exporter.messages.labels(message.topic, rejected.reason).inc()
        log.warning(
            "rejected %s[%d]@%d: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            rejected.reason,
            rejected.detail,
        )
        self.sink.dead_letter(message, rejected)

    def _observe(self, messages: list[Message], points: list[Point], outcome: Outcome) -> None:
        s = self.summary
        s.messages += len(messages)
        s.points += len(points)
        s.windows_scored += len(outcome.verdicts)
        s.alerts.update(a.status for a in outcome.alerts)
        e = self.exporter
        e.observe_outcome(outcome)
        for detector, seconds in outcome.scoring_seconds.items():
            e.scoring.labels(detector).observe(seconds)
        now = time.time()
        for message in messages:
            if message.timestamp is not None:
                e.latency.observe(max(now - message.timestamp, 0.0))
        for (topic, partition), lag in self.source.lag().items():
            e.lag.labels(topic, str(partition)).set(lag)
        for detector in self.engine.detectors:
            e.tracked.labels(detector.settings.name).set(len(detector.windows))
        dropped = self.engine.dropped()
        for reason, count in (dropped - self._dropped_seen).items():
            e.points_dropped.labels(reason).inc(count)
        self._dropped_seen = dropped
