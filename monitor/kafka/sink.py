"""The alert, dead-letter and state sink: records kept until the brokers acknowledge them, sent again
when they fail, so `flush` returning means the offsets behind them may be committed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata

from monitor.config import KafkaSettings
from monitor.kafka.client import FLUSH_TIMEOUT_S, SEND_BLOCK_MS, DeliveryError, client_options, connect
from monitor.records import Alert, Message, Rejected, encode_alert


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
