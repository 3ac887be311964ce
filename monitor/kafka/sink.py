"""The alert, dead-letter and state sink: records kept until the brokers acknowledge them, sent again
when they fail, so `flush` returning means the offsets behind them may be committed.

`ResendingSink` holds that bookkeeping for both clients; `KafkaSink` is kafka-python's producer under it
(`monitor.kafka.confluent.ConfluentSink` is librdkafka's).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from monitor.config import KafkaSettings
from monitor.kafka.client import FLUSH_TIMEOUT_S, SEND_BLOCK_MS, DeliveryError, client_options, connect
from monitor.records import Alert, Message, Rejected, encode_alert

BATCH_BYTES = 512 * 1024
"""kafka-python's producer batch per partition (its default is 16 KiB). The producer wakes its network
thread for every new batch, a socket write that gives up the interpreter lock: with 2 KB state records
that was one wake-up per 7 records, 7% of the loop thread at 100,000 series. librdkafka batches 1 MB."""


@dataclass(slots=True)
class Outgoing:
    """A record on its way: kept until acknowledged, so a failed one can be sent again.

    The client's delivery callback sets `acked`, or `error` and clears `sent` (the next flush resends it).
    """

    topic: str
    value: bytes | None
    key: bytes | None
    headers: list
    partition: int | None
    sent: bool = False
    acked: bool = False
    error: Exception | None = None

    def delivered(self) -> None:
        self.acked = True

    def failed(self, error: Exception) -> None:
        self.sent, self.error = False, error


class ResendingSink:
    """Produces alerts (keyed by series), dead letters and state records; `flush` waits for every
    acknowledgement and sends again what failed (idempotent producer: retries never duplicate).

    A client fills in `_produce` (hand one record over, arranging for `Outgoing.delivered`/`failed` to be
    called; raise one of `send_errors` when it cannot even be queued), `_wait` and `close`.
    """

    send_errors: tuple[type[Exception], ...] = ()

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._pending: list[Outgoing] = []

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
        outgoing = Outgoing(topic, value, key, headers or [], partition)
        self._pending.append(outgoing)
        self._send(outgoing)

    def _send(self, out: Outgoing) -> None:
        out.sent, out.error = True, None
        try:
            self._produce(out)
        except self.send_errors as exc:  # the broker is away (no metadata in time): the next flush resends
            out.failed(exc)

    def flush(self) -> None:
        """Return once every record sent so far is acknowledged; else raise DeliveryError, having sent the
        failed ones again, so that calling `flush` until it returns delivers everything exactly as sent."""
        for out in self._pending:
            if not out.sent:  # failed (or never handed over): acknowledged ones were sent
                self._send(out)
        if not self._pending:
            return
        self._wait(FLUSH_TIMEOUT_S)
        waiting = [out for out in self._pending if not out.acked]
        total, self._pending = len(self._pending), waiting
        if waiting:
            errors = [out.error for out in waiting if out.error is not None]
            why = f": {errors[-1]}" if errors else f" within {FLUSH_TIMEOUT_S:g}s"
            raise DeliveryError(f"{len(waiting)} of {total} messages not acknowledged yet{why}")

    def _produce(self, out: Outgoing) -> None:
        raise NotImplementedError

    def _wait(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the acknowledgements of what was handed over."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class KafkaSink(ResendingSink):
    """`ResendingSink` on kafka-python's producer (acks=all, idempotent)."""

    send_errors = (KafkaError,)

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__(settings)
        self.producer = connect(
            lambda: KafkaProducer(
                acks="all",
                linger_ms=5,
                batch_size=BATCH_BYTES,
                max_block_ms=SEND_BLOCK_MS,
                compression_type="lz4",  # state records repeat much of each other (shared threshold seeds)
                **client_options(settings),
            ),
            settings,
        )

    def _produce(self, out: Outgoing) -> None:
        future = self.producer.send(
            out.topic, value=out.value, key=out.key, headers=out.headers, partition=out.partition
        )
        future.add_callback(lambda _metadata: out.delivered())
        future.add_errback(out.failed)

    def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(KafkaTimeoutError):  # what is still in flight stays pending
            self.producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self.producer.close(timeout=FLUSH_TIMEOUT_S)
