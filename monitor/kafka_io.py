"""Kafka at the edge: the metrics source, the alert and dead-letter sink, topic admin. kafka-python only.

Delivery is at-least-once: auto-commit is off, and the service commits the consumed offsets only after
`KafkaSink.flush` has seen every alert and dead letter of those records acknowledged by the brokers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata

from monitor.config import KafkaSettings
from monitor.errors import MonitorError
from monitor.records import Alert, Message, Point, Rejected, encode_alert, encode_point

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0
METADATA_MAX_AGE_MS = 30_000
"""How soon a consumer notices new partitions or a topic created after it started."""
T = TypeVar("T")


class DeliveryError(MonitorError):
    """The brokers did not acknowledge alerts or dead letters; offsets must not be committed."""


def client_options(settings: KafkaSettings) -> dict[str, object]:
    """Connection options shared by consumer, producer and admin (security included)."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    return options


class KafkaSource:
    """Polls the metrics topic in a consumer group; `commit` stores the offsets of all that was polled."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.consumer = _connect(
            lambda: KafkaConsumer(
                group_id=settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset=settings.auto_offset_reset,
                max_poll_records=settings.max_poll_records,
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
                **client_options(settings),
            ),
            settings,
        )
        # Fetch the topic's metadata before joining the group: a leader that joins without it assigns
        # nothing and waits for the next metadata refresh.
        if self.consumer.partitions_for_topic(settings.metrics_topic) is None:
            log.warning("topic %s does not exist yet; consuming once it does", settings.metrics_topic)
        self.consumer.subscribe([settings.metrics_topic])

    def poll(self) -> list[Message]:
        batches = self.consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
        return [
            Message(
                r.value,
                r.timestamp / 1000.0 if r.timestamp >= 0 else None,
                r.topic,
                r.partition,
                r.offset,
                r.key,
            )
            for records in batches.values()
            for r in records
        ]

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def commit(self) -> None:
        """Commit the position after every record `poll` returned (call only after the sink flushed)."""
        self.consumer.commit()

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the log end per assigned partition, from what the last fetches reported."""
        lags = {}
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is not None:
                lags[(tp.topic, tp.partition)] = max(end - self.consumer.position(tp), 0)
        return lags

    def close(self) -> None:
        self.consumer.close(autocommit=False)


class KafkaSink:
    """Produces alerts (keyed by series) and dead letters; `flush` waits for every acknowledgement."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.producer = _connect(
            lambda: KafkaProducer(acks="all", retries=10, linger_ms=5, **client_options(settings)), settings
        )
        self._pending: list[FutureRecordMetadata] = []

    def publish(self, alert: Alert) -> None:
        self.send(self.settings.alert_topic, encode_alert(alert), alert.series.encode())

    def dead_letter(self, message: Message, rejected: Rejected) -> None:
        headers = [
            ("reason", rejected.reason.encode()),
            ("detail", rejected.detail.encode()),
            ("source.topic", message.topic.encode()),
            ("source.partition", str(message.partition).encode()),
            ("source.offset", str(message.offset).encode()),
        ]
        self.send(self.settings.dead_letter_topic, message.value or b"", message.key, headers)

    def send(self, topic: str, value: bytes, key: bytes | None, headers: list | None = None) -> None:
        self._pending.append(self.producer.send(topic, value=value, key=key, headers=headers or []))

    def flush(self) -> None:
        if not self._pending:
            return
        self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        pending, self._pending = self._pending, []
        failures = [f.exception for f in pending if not f.succeeded()]
        if failures:
            raise DeliveryError(f"{len(failures)} of {len(pending)} messages not acknowledged: {failures[0]}")

    def close(self) -> None:
        self.producer.close(timeout=FLUSH_TIMEOUT_S)


def ensure_topics(settings: KafkaSettings, topics: Iterable[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet, with the cluster's default replication factor."""
    admin = _connect(lambda: KafkaAdminClient(**client_options(settings)), settings)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, partitions, -1) for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
                log.info("created topics %s", [t.name for t in missing])
            except TopicAlreadyExistsError:
                pass  # another replica won the race
    except KafkaError as exc:
        raise MonitorError(f"cannot create topics at {settings.bootstrap_servers}: {exc}") from exc
    finally:
        admin.close()


def read_range(settings: KafkaSettings, topic: str, start: float, end: float) -> Iterator[Message]:
    """Every record of `topic` with a timestamp in [start, end), found with `offsets_for_times`.

    Used to train on what the metrics topic already holds; it reads outside any consumer group.
    """
    consumer = _connect(
        lambda: KafkaConsumer(enable_auto_commit=False, group_id=None, **client_options(settings)), settings
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise MonitorError(f"topic {topic!r} does not exist at {settings.bootstrap_servers}")
        consumer.assign(partitions)
        stops = _offsets_at(consumer, partitions, end)
        for tp, offset in _offsets_at(consumer, partitions, start).items():
            consumer.seek(tp, offset)
        remaining = {tp for tp in partitions if consumer.position(tp) < stops[tp]}
        while remaining:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for r in records:
                    if r.offset < stops[tp]:
                        yield Message(r.value, r.timestamp / 1000.0, r.topic, r.partition, r.offset, r.key)
                if consumer.position(tp) >= stops[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close(autocommit=False)


def _offsets_at(consumer: KafkaConsumer, partitions: list[TopicPartition], ts: float) -> dict[TopicPartition, int]:
    """The first offset at or after `ts` per partition; the log end where nothing is that late."""
    found = consumer.offsets_for_times({tp: int(ts * 1000) for tp in partitions})
    ends = consumer.end_offsets(partitions)
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in partitions}


def _connect(make: Callable[[], T], settings: KafkaSettings) -> T:
    """Build a client, turning "no broker" into one clear line instead of a traceback."""
    try:
        return make()
    except KafkaError as exc:
        raise MonitorError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc


def produce_points(settings: KafkaSettings, topic: str, points: Iterable[Point]) -> int:
    """Send points in the native format, keyed by series; returns how many were acknowledged."""
    sink = KafkaSink(settings)
    count = 0
    try:
        for point in points:
            sink.send(topic, encode_point(point), point.series.encode())
            count += 1
            if count % 10_000 == 0:
                sink.flush()
        sink.flush()
    finally:
        sink.close()
    return count


def follow_topic(settings: KafkaSettings, topic: str, stop: threading.Event) -> Iterator[bytes]:
    """Values of `topic` from its start until `stop` is set (outside any group; for the demo and tools)."""
    consumer = _connect(
        lambda: KafkaConsumer(topic, group_id=None, auto_offset_reset="earliest", **client_options(settings)),
        settings,
    )
    try:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    yield r.value
    finally:
        consumer.close(autocommit=False)
