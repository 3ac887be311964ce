"""The optional librdkafka client (`kafka.client: confluent-kafka`): the same metrics source and sink as
kafka-python's, with the same guarantees, for a lower cost per record.

Auto-commit is off and `commit` stores the position after every record `poll` returned, only when the
service says so (after the sink's flush); the producer is idempotent with acks=all and resends what
fails through `ResendingSink`. librdkafka reports a lost broker through its error callback rather than
an exception; the source turns that into `BrokerUnavailable`, which the run loop waits out like
kafka-python's errors. Topic admin and the changelog's restore reads stay on kafka-python (not on the hot
path), so both clients share them. Installed with the `confluent` extra.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Message as RecordMessage

from monitor.config import KafkaSettings
from monitor.errors import MonitorError
from monitor.kafka.client import FLUSH_TIMEOUT_S, METADATA_MAX_AGE_MS, SEND_BLOCK_MS, BrokerUnavailable, commit_offset
from monitor.kafka.sink import Outgoing, ResendingSink
from monitor.kafka.source import PartitionListener
from monitor.records import Message

CLIENT_LOG = logging.getLogger("kafka.librdkafka")
"""librdkafka's own lines, under `kafka` like kafka-python's, so the outage hold-back (`logs.CLIENT_LOGS`)
and the level floor of `setup_logging` apply to both clients alike."""

BROKER_DOWN = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT})
"""librdkafka's error codes that mean no broker answers (it keeps reconnecting by itself)."""
PROBE_TIMEOUT_S = 1.0
"""How long a quiet, flagged source asks the cluster whether it answers again."""


def librdkafka_options(settings: KafkaSettings) -> dict[str, Any]:
    """The connection and security settings in librdkafka's names (kafka-python's: `client_options`)."""
    options: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        "security.protocol": settings.security_protocol.lower(),
        "topic.metadata.refresh.interval.ms": METADATA_MAX_AGE_MS,
    }
    if settings.sasl_mechanism:
        options.update(
            {
                "sasl.mechanism": settings.sasl_mechanism,
                "sasl.username": settings.sasl_username,
                "sasl.password": settings.sasl_password,
            }
        )
    paths = {
        "ssl.ca.location": settings.ssl_cafile,
        "ssl.certificate.location": settings.ssl_certfile,
        "ssl.key.location": settings.ssl_keyfile,
        "ssl.key.password": settings.ssl_key_password,
    }
    if settings.security_protocol.endswith("SSL"):
        options.update({k: str(v) for k, v in paths.items() if v is not None})
        options["ssl.endpoint.identification.algorithm"] = "https" if settings.ssl_check_hostname else "none"
    return options


class ConfluentSource:
    """Polls the metrics topic (and the feedback topic, when given) in a consumer group through librdkafka;
    the same contract as `KafkaSource`."""

    def __init__(
        self, settings: KafkaSettings, listener: PartitionListener | None = None, feedback: bool = False
    ) -> None:
        self.settings = settings
        self._down: KafkaError | None = None
        self.consumer = Consumer(
            {
                **librdkafka_options(settings),
                "group.id": settings.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": settings.auto_offset_reset,
                "session.timeout.ms": settings.session_timeout_ms,
                "heartbeat.interval.ms": min(3000, settings.session_timeout_ms // 3),
                "error_cb": self._on_error,
                "logger": CLIENT_LOG,
            }
        )
        _check_reachable(self.consumer, settings)
        hooks: dict[str, Any] = {}
        if listener is not None:  # called from inside `consume`, in the loop thread
            metrics = settings.metrics_topic
            hooks = {
                "on_assign": lambda _c, tps: listener.on_assigned(_partitions(tps, metrics)),
                "on_revoke": lambda _c, tps: listener.on_revoked(_partitions(tps, metrics)),
                "on_lost": lambda _c, tps: listener.on_lost(_partitions(tps, metrics)),
            }
        topics = [settings.metrics_topic, *([settings.feedback_topic] if feedback else [])]
        self.consumer.subscribe(topics, **hooks)

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in BROKER_DOWN:
            self._down = error
        else:
            CLIENT_LOG.warning("%s", error.str())

    def poll(self) -> list[Message]:
        """The next records; `BrokerUnavailable` when none came because no broker answers."""
        records = self.consumer.consume(self.settings.max_poll_records, self.settings.poll_timeout_ms / 1000.0)
        messages = [_message(r) for r in records if r.error() is None]
        if messages:
            self._down = None
        elif self._down is not None and not self._answers():
            raise BrokerUnavailable(f"no broker at {self.settings.bootstrap_servers} answers: {self._down.str()}")
        return messages

    def _answers(self) -> bool:
        """Whether the cluster answers a metadata request now (librdkafka says when brokers go, not when
        they come back)."""
        try:
            self.consumer.list_topics(self.settings.metrics_topic, timeout=PROBE_TIMEOUT_S)
        except KafkaException:
            return False
        self._down = None
        return True

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def commit(self, limits: Mapping[int, int] | None = None) -> None:
        """Commit the position after every record `poll` returned, no further than `limits` in the metrics
        topic's partitions (call only after the sink flushed)."""
        explicit: dict[str, Any] = {}
        if limits:
            assignment = self.consumer.assignment()
            explicit["offsets"] = [
                TopicPartition(
                    tp.topic, tp.partition, commit_offset(self.settings, tp.topic, tp.partition, tp.offset, limits)
                )
                for tp in (self.consumer.position(assignment) if assignment else ())
                if tp.offset >= 0
            ]
        try:
            self.consumer.commit(**explicit, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing consumed since the last commit
                raise BrokerUnavailable(f"commit failed: {exc.args[0].str()}") from exc

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the log end per assigned partition, from the fetches' cached high watermarks."""
        lags = {}
        assignment = self.consumer.assignment()
        for tp in self.consumer.position(assignment) if assignment else ():
            _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                lags[(tp.topic, tp.partition)] = max(high - tp.offset, 0)
        return lags

    def close(self) -> None:
        self.consumer.close()


class ConfluentSink(ResendingSink):
    """`ResendingSink` on librdkafka's producer (acks=all, idempotent, lz4 like `KafkaSink`)."""

    send_errors = (BufferError, KafkaException)

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__(settings)
        self.producer = Producer(
            {
                **librdkafka_options(settings),
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.timeout.ms": 10 * SEND_BLOCK_MS,
                "logger": CLIENT_LOG,
            }
        )
        _check_reachable(self.producer, settings)

    def _produce(self, out: Outgoing) -> None:
        extra = {} if out.partition is None else {"partition": out.partition}

        def on_delivery(error: KafkaError | None, _record: RecordMessage) -> None:
            if error is None:
                out.delivered()
            else:
                out.failed(KafkaException(error))

        def produce() -> None:
            self.producer.produce(out.topic, out.value, out.key, headers=out.headers, on_delivery=on_delivery, **extra)

        try:
            produce()
        except BufferError:  # the local queue is full: serve acknowledgements once, then try again
            self.producer.poll(1.0)
            produce()

    def _wait(self, timeout_s: float) -> None:
        self.producer.flush(timeout_s)

    def close(self) -> None:
        self.producer.flush(FLUSH_TIMEOUT_S)


def _check_reachable(client: Consumer | Producer, settings: KafkaSettings) -> None:
    """librdkafka connects lazily; ask for metadata once so that no broker at start is one clear line, as
    with kafka-python."""
    try:
        client.list_topics(timeout=settings.connect_timeout_ms / 1000.0)
    except KafkaException as exc:
        raise MonitorError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc.args[0].str()}") from None


def _message(record: RecordMessage) -> Message:
    kind, ms = record.timestamp()
    return Message(
        record.value(),
        ms / 1000.0 if kind != 0 and ms >= 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
        record.topic(),
        record.partition(),
        record.offset(),
        record.key(),
    )


def _partitions(tps: Collection[TopicPartition], topic: str) -> set[int]:
    """The metrics topic's partitions: the feedback topic's follow them (co-partitioned by series)."""
    return {tp.partition for tp in tps if tp.topic == topic}
