"""Kafka at the edge: the metrics source, the alert and dead-letter sink, topic admin. kafka-python only.

Delivery is at-least-once: auto-commit is off, and the service commits the consumed offsets only after
`KafkaSink.flush` has seen every alert and dead letter of those records acknowledged by the brokers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata

from monitor.config import KafkaSettings
from monitor.errors import MonitorError
from monitor.records import Alert, Message, Rejected, encode_alert

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0
"""How long one flush waits for acknowledgements before the run loop reports the broker unready and retries."""
COMMIT_TIMEOUT_MS = 10_000
SEND_BLOCK_MS = 10_000
"""How long `send` may wait for a topic's metadata; after that the record is queued again for the next flush."""
METADATA_MAX_AGE_MS = 30_000
"""How soon a consumer notices new partitions or a topic created after it started."""
T = TypeVar("T")


class DeliveryError(MonitorError):
    """The brokers did not acknowledge alerts or dead letters yet; offsets must not be committed."""


class PartitionListener(Protocol):
    """Told which metrics partitions this replica gained or lost (see `monitor.checkpoint`)."""

    def on_revoked(self, partitions: Collection[int]) -> None: ...

    def on_assigned(self, partitions: Collection[int]) -> None:
        """The whole new assignment (eager protocol: kafka-python's default assignors)."""
        ...

    def on_lost(self, partitions: Collection[int]) -> None:
        """The group dropped this member: other members may have processed these partitions since."""
        ...


def client_options(settings: KafkaSettings) -> dict[str, object]:
    """Connection options shared by consumer, producer and admin (security included)."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "bootstrap_timeout_ms": settings.connect_timeout_ms,
    }
    if settings.sasl_mechanism:
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password,
        )
    if settings.security_protocol.endswith("SSL"):
        options.update(
            ssl_cafile=_path(settings.ssl_cafile),
            ssl_certfile=_path(settings.ssl_certfile),
            ssl_keyfile=_path(settings.ssl_keyfile),
            ssl_password=settings.ssl_key_password,
            ssl_check_hostname=settings.ssl_check_hostname,
        )
    return options


def _path(path: object) -> str | None:
    return None if path is None else str(path)


class _Rebalance(ConsumerRebalanceListener):
    """kafka-python calls these on its IO thread while `poll` (or `close`) blocks the run loop, so they
    only pass the partition numbers on; the listener acts on them from the loop."""

    def __init__(self, listener: PartitionListener) -> None:
        self.listener = listener

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.listener.on_revoked({tp.partition for tp in revoked})

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self.listener.on_assigned({tp.partition for tp in assigned})

    def on_partitions_lost(self, lost: Collection[TopicPartition]) -> None:
        self.listener.on_lost({tp.partition for tp in lost})


class KafkaSource:
    """Polls the metrics topic in a consumer group; `commit` stores the offsets of all that was polled."""

    def __init__(self, settings: KafkaSettings, listener: PartitionListener | None = None) -> None:
        self.settings = settings
        self.consumer = connect(
            lambda: KafkaConsumer(
                group_id=settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset=settings.auto_offset_reset,
                max_poll_records=settings.max_poll_records,
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=min(3000, settings.session_timeout_ms // 3),
                **client_options(settings),
            ),
            settings,
        )
        # Fetch the topic's metadata before joining the group: a leader that joins without it assigns
        # nothing and waits for the next metadata refresh.
        if self.consumer.partitions_for_topic(settings.metrics_topic) is None:
            log.warning("topic %s does not exist yet; consuming once it does", settings.metrics_topic)
        self.consumer.subscribe([settings.metrics_topic], listener=_Rebalance(listener) if listener else None)
        self._coordinator_found = False

    def poll(self) -> list[Message]:
        """The next records; KafkaConnectionError when none came because no broker answers, so the run loop
        reports it instead of mistaking an outage for a quiet topic."""
        batches = self.consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
        if not batches and self._coordinator_lost():
            raise KafkaConnectionError(f"no broker at {self.settings.bootstrap_servers} answers for the group")
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
        self.consumer.commit(timeout_ms=COMMIT_TIMEOUT_MS)

    def _coordinator_lost(self) -> bool:
        """kafka-python has no public "broker reachable" call; its coordinator lookup is the closest signal
        (it turns unknown as soon as the connection to the group coordinator drops). Before it was first
        found, the consumer is still starting, not cut off."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        unknown = coordinator is not None and coordinator.coordinator_unknown()
        self._coordinator_found = self._coordinator_found or not unknown
        return unknown and self._coordinator_found

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the log end per assigned partition, from what the last fetches reported; a
        partition whose position needs the broker (which may be away) is left out rather than waited for."""
        lags = {}
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            try:
                position = self.consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if position is not None:
                lags[(tp.topic, tp.partition)] = max(end - position, 0)
        return lags

    def close(self) -> None:
        self.consumer.close(autocommit=False)


@dataclass(slots=True)
class _Outgoing:
    """A record on its way: kept until acknowledged, so a failed one can be sent again."""

    topic: str
    value: bytes | None
    key: bytes | None
    headers: list
    partition: int | None
    future: FutureRecordMetadata | None = None
    error: Exception | None = None


class KafkaSink:
    """Produces alerts (keyed by series), dead letters and state records; `flush` waits for every
    acknowledgement and sends again what failed (idempotent producer: retries never duplicate)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.producer = connect(
            lambda: KafkaProducer(
                acks="all",
                linger_ms=5,
                max_block_ms=SEND_BLOCK_MS,
                compression_type="lz4",  # state records repeat much of each other (shared threshold seeds)
                **client_options(settings),
            ),
            settings,
        )
        self._pending: list[_Outgoing] = []

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

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list | None = None,
        partition: int | None = None,
    ) -> None:
        outgoing = _Outgoing(topic, value, key, headers or [], partition)
        self._pending.append(outgoing)
        self._send(outgoing)

    def _send(self, out: _Outgoing) -> None:
        try:
            out.future = self.producer.send(
                out.topic, value=out.value, key=out.key, headers=out.headers, partition=out.partition
            )
        except KafkaError as exc:  # no metadata within SEND_BLOCK_MS: the broker is away; the next flush resends
            out.future, out.error = None, exc

    def flush(self) -> None:
        """Return once every record sent so far is acknowledged; else raise DeliveryError, having sent the
        failed ones again, so that calling `flush` until it returns delivers everything exactly as sent."""
        for out in self._pending:
            if out.future is None:
                self._send(out)
        if not self._pending:
            return
        with contextlib.suppress(KafkaTimeoutError):  # what is still in flight stays pending
            self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        waiting = []
        for out in self._pending:
            future = out.future
            if future is not None and future.is_done and future.succeeded():
                continue
            if future is not None and future.is_done:
                out.future, out.error = None, future.exception
            waiting.append(out)
        total, self._pending = len(self._pending), waiting
        if waiting:
            errors = [out.error for out in waiting if out.error is not None]
            why = f": {errors[-1]}" if errors else f" within {FLUSH_TIMEOUT_S:g}s"
            raise DeliveryError(f"{len(waiting)} of {total} messages not acknowledged yet{why}")

    def close(self) -> None:
        self.producer.close(timeout=FLUSH_TIMEOUT_S)


def ensure_topics(settings: KafkaSettings, topics: Iterable[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet, with the cluster's default replication factor."""
    admin = connect(lambda: KafkaAdminClient(**client_options(settings)), settings)
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


def connect(make: Callable[[], T], settings: KafkaSettings) -> T:
    """Build a client, turning "no broker" into one clear line instead of a traceback."""
    try:
        return make()
    except KafkaError as exc:
        raise MonitorError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc
