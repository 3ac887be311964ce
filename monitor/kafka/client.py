"""kafka-python clients as the monitor makes them: connection and security options, one clear line when no
broker answers, topic admin, and the errors that mean "the broker is away" (the run loop waits those out).

Delivery is at-least-once: auto-commit is off, and the service commits the consumed offsets only after
`KafkaSink.flush` (`monitor.kafka.sink`) has seen every alert and dead letter of those records acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from monitor.config import KafkaSettings
from monitor.errors import MonitorError
from monitor.logs import CLIENT_LOGS

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


class BrokerUnavailable(MonitorError):
    """No broker answers (the librdkafka client's signal; kafka-python raises its own `KafkaError`s)."""


BROKER_AWAY: tuple[type[Exception], ...] = (KafkaError, DeliveryError, BrokerUnavailable)
"""What the run loop retries with backoff instead of stopping: the broker did not answer or acknowledge."""


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


def partition_count(settings: KafkaSettings, topic: str) -> int:
    """How many partitions `topic` has (1 when it does not exist yet): topics keyed by series that must
    follow the metrics topic's partitions are created with as many."""
    admin = connect(lambda: KafkaAdminClient(**client_options(settings)), settings)
    try:
        described = admin.describe_topics([topic])
    except KafkaError as exc:
        raise MonitorError(f"cannot describe topic {topic!r} at {settings.bootstrap_servers}: {exc}") from exc
    finally:
        admin.close()
    return max(sum(len(t.get("partitions") or ()) for t in described), 1)


def commit_offset(settings: KafkaSettings, topic: str, partition: int, position: int, limits: Mapping[int, int]) -> int:
    """The offset to commit for one assigned partition: its position, but in a metrics partition no further
    than `limits` (the first record some series' written state lacks); the feedback topic is not limited."""
    if topic != settings.metrics_topic:
        return position
    return min(position, limits.get(partition, position))


def connect(make: Callable[[], T], settings: KafkaSettings) -> T:
    """Build a client, turning "no broker" (or wrong credentials) into one clear line instead of a traceback
    and the client library's flood of connection errors: those are held back and counted in that line."""
    holding = CLIENT_LOGS.hold()
    try:
        client = make()
    except KafkaError as exc:
        held, first = CLIENT_LOGS.release() if holding else (0, None)
        who = f" as SASL user {settings.sasl_username!r} ({settings.sasl_mechanism})" if settings.sasl_mechanism else ""
        more = f"; kafka-python logged {held} warnings and errors, the worst first: {first}" if held else ""
        raise MonitorError(
            f"cannot reach Kafka at {settings.bootstrap_servers}{who}{_tls_hint(settings, first)}: {exc}{more}"
        ) from exc
    if holding:
        CLIENT_LOGS.release()
    return client


def _tls_hint(settings: KafkaSettings, first: str | None) -> str:
    """Name the setting behind a certificate the client refused: the usual cause is the wrong CA file."""
    if first is None or "CERTIFICATE_VERIFY_FAILED" not in first:
        return ""
    ca = settings.ssl_cafile or "the system's CAs (kafka.ssl_cafile is unset)"
    return f" (TLS: the broker's certificate does not verify against kafka.ssl_cafile {ca})"
