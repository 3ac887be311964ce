"""The `kafka` and `checkpoint` sections: brokers, topics, group timing, TLS, SASL, the state changelog.

Kept apart from `monitor.config` so that module stays readable; the same rules apply: one-line errors
naming the key path. Secrets never come from the file: the SASL password and the TLS key password are
read from the environment, or from a file whose *path* the config names (a mounted Kubernetes or Docker
secret), and no `repr` of the settings shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor.config.reader import Invalid, Section

ENV_OVERRIDES = {
    "MONITOR_KAFKA_BOOTSTRAP_SERVERS": "bootstrap_servers",
    "MONITOR_KAFKA_SASL_USERNAME": "sasl_username",
    "MONITOR_KAFKA_SASL_PASSWORD": "sasl_password",
    "MONITOR_KAFKA_SSL_KEY_PASSWORD": "ssl_key_password",
}
CLIENTS = ("kafka-python", "confluent-kafka")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SECRET_KEYS = {"sasl_password": "MONITOR_KAFKA_SASL_PASSWORD", "ssl_key_password": "MONITOR_KAFKA_SSL_KEY_PASSWORD"}


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    client: str = "kafka-python"
    """The daemon's consumer and producer library: kafka-python, or librdkafka (confluent-kafka extra)."""
    client_id: str = "anomaly-monitor"
    group_id: str = "anomaly-monitor"
    metrics_topic: str = "metrics"
    alert_topic: str = "anomaly-alerts"
    dead_letter_topic: str = "metrics-dead-letter"
    feedback_topic: str = "anomaly-alerts-feedback"
    """Verdicts on alerts (`monitor.feedback/v1`), read in the monitor's group; unset: `<alert_topic>-feedback`."""
    auto_offset_reset: str = "earliest"
    max_poll_records: int = 2000
    poll_timeout_ms: int = 500
    session_timeout_ms: int = 45_000
    """How long the group waits for a silent replica before giving its partitions to the others."""
    connect_timeout_ms: int = 30_000
    """How long a client looks for a broker that answers (and accepts its credentials) at start."""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: str | None = None
    ssl_check_hostname: bool = True

    def __repr__(self) -> str:  # never print the secret
        return f"KafkaSettings(bootstrap_servers={self.bootstrap_servers!r}, group_id={self.group_id!r})"


@dataclass(frozen=True, slots=True)
class CheckpointSettings:
    enabled: bool = True
    topic: str = ""
    """The compacted changelog topic; empty: `<group_id>-state-changelog`."""
    interval_s: float = 1.0
    """Seconds between checkpoints (and so commits)."""
    max_replay_s: float = 60.0
    """Each changed series' state is written at least this often (0: at every checkpoint): what a crash or
    a moved partition replays at most, against the bytes written per point."""
    pages: int = 1024
    """Pages each partition's states are written in, a record per page: fewer pages, fewer and larger
    records (a changed series takes its page-mates along)."""

    def topic_for(self, group_id: str) -> str:
        return self.topic or f"{group_id}-state-changelog"


def parse_kafka(s: Section, base_dir: Path, environ: Mapping[str, str]) -> KafkaSettings:
    d = KafkaSettings()
    for key, var in SECRET_KEYS.items():
        if key in s.doc:
            raise Invalid(f"{s.path_of(key)}: secrets are not read from the file; set {var} or {key}_file")
    values = {
        "bootstrap_servers": s.text("bootstrap_servers", d.bootstrap_servers),
        "client": s.text("client", d.client, CLIENTS),
        "client_id": s.text("client_id", d.client_id),
        "group_id": s.text("group_id", d.group_id),
        "metrics_topic": s.text("metrics_topic", d.metrics_topic),
        "alert_topic": s.text("alert_topic", d.alert_topic),
        "dead_letter_topic": s.text("dead_letter_topic", d.dead_letter_topic),
        "feedback_topic": s.text("feedback_topic", None),
        "auto_offset_reset": s.text("auto_offset_reset", d.auto_offset_reset, ("earliest", "latest")),
        "max_poll_records": s.integer("max_poll_records", d.max_poll_records, 1),
        "poll_timeout_ms": s.integer("poll_timeout_ms", d.poll_timeout_ms, 1, 60_000),
        "session_timeout_ms": s.integer("session_timeout_ms", d.session_timeout_ms, 6_000, 300_000),
        "connect_timeout_ms": s.integer("connect_timeout_ms", d.connect_timeout_ms, 1_000, 600_000),
        "security_protocol": s.text("security_protocol", d.security_protocol, SECURITY_PROTOCOLS),
        "sasl_mechanism": s.text("sasl_mechanism", None, SASL_MECHANISMS),
        "sasl_username": s.text("sasl_username", None),
        "ssl_check_hostname": s.flag("ssl_check_hostname", d.ssl_check_hostname),
    }
    values["feedback_topic"] = values["feedback_topic"] or f"{values['alert_topic']}-feedback"
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = s.text(key, None)
        values[key] = None if path is None else base_dir / path
    secret_files = {key: _secret_file(s, f"{key}_file", base_dir) for key in SECRET_KEYS}
    s.done()
    for key, secret in secret_files.items():
        if secret is not None:
            values[key] = secret
    for var, key in ENV_OVERRIDES.items():
        if environ.get(var):
            values[key] = environ[var]
    settings = KafkaSettings(**values)
    _check_security(s, settings)
    return settings


def parse_checkpoint(s: Section) -> CheckpointSettings:
    d = CheckpointSettings()
    settings = CheckpointSettings(
        enabled=s.flag("enabled", d.enabled),
        topic=s.text("topic", None) or d.topic,
        interval_s=s.number("interval_s", d.interval_s, 0.0, 3600.0),
        max_replay_s=s.number("max_replay_s", d.max_replay_s, 0.0, 3600.0),
        pages=s.integer("pages", d.pages, 1, 1 << 20),
    )
    s.done()
    return settings


def _secret_file(s: Section, key: str, base_dir: Path) -> str | None:
    """The secret in the file the key names, stripped of the trailing newline editors add."""
    name = s.text(key, None)
    if name is None:
        return None
    try:
        return (base_dir / name).read_text().strip()
    except OSError as exc:
        raise Invalid(f"{s.path_of(key)}: cannot read {name}: {exc.strerror}") from None


def _check_security(s: Section, k: KafkaSettings) -> None:
    """A half-configured SASL setup would only fail at the first connection, with a vaguer message."""
    if k.sasl_mechanism is None:
        return
    if not k.security_protocol.startswith("SASL_"):
        raise Invalid(f"{s.path_of('sasl_mechanism')}: needs security_protocol SASL_PLAINTEXT or SASL_SSL")
    if not k.sasl_username or not k.sasl_password:
        raise Invalid(
            f"{s.path_of('sasl_mechanism')}: needs sasl_username (or MONITOR_KAFKA_SASL_USERNAME) and the "
            "password in MONITOR_KAFKA_SASL_PASSWORD or sasl_password_file"
        )
