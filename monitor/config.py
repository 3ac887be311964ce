"""config.yaml → one frozen, typed `Config`; every mistake is one line naming the key path and the value.

Unknown keys are errors too: a misspelt option that is silently ignored is worse than a failed start.
Environment variables override the broker address and the secrets, so they need not live in the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from monitor.alerting import AlertSettings
from monitor.config_reader import Invalid, Section, show
from monitor.detector import DetectorSettings
from monitor.errors import ConfigError
from monitor.threshold import ThresholdSettings

ENV_OVERRIDES = {
    "MONITOR_KAFKA_BOOTSTRAP_SERVERS": "bootstrap_servers",
    "MONITOR_KAFKA_SASL_USERNAME": "sasl_username",
    "MONITOR_KAFKA_SASL_PASSWORD": "sasl_password",
}
MODEL_KINDS = ("lstm",)
INPUT_FORMATS = ("json",)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "anomaly-monitor"
    group_id: str = "anomaly-monitor"
    metrics_topic: str = "metrics"
    alert_topic: str = "anomaly-alerts"
    dead_letter_topic: str = "metrics-dead-letter"
    auto_offset_reset: str = "earliest"
    max_poll_records: int = 2000
    poll_timeout_ms: int = 500
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"KafkaSettings(bootstrap_servers={self.bootstrap_servers!r}, group_id={self.group_id!r})"


@dataclass(frozen=True, slots=True)
class ModelSettings:
    path: Path = Path("models/default")
    kind: str = "lstm"
    hidden: int = 32
    latent: int = 16
    layers: int = 1
    score_tail: int = 0


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    validation_split: float = 0.2
    patience: int = 4
    max_windows: int = 20_000
    seed: int = 0


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    settings: DetectorSettings
    model: ModelSettings
    training: TrainingSettings


@dataclass(frozen=True, slots=True)
class Config:
    kafka: KafkaSettings
    detectors: tuple[DetectorConfig, ...]
    input_format: str = "json"
    max_message_bytes: int = 1_048_576
    listen_host: str = "127.0.0.1"
    listen_port: int = 9308
    exporter_max_series: int = 2000
    scoring_threads: int = 1
    scoring_max_batch: int = 256
    source: str = "config.yaml"

    def detector(self, name: str) -> DetectorConfig:
        for d in self.detectors:
            if d.settings.name == name:
                return d
        names = [d.settings.name for d in self.detectors]
        raise ConfigError(f"{self.source}: no detector named {name!r} (have {names})")


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    return parse_config(doc, source=str(path), base_dir=path.parent, environ=environ)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans several lines with a snippet; the config error is one line."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"{getattr(exc, 'problem', None) or 'syntax error'} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def parse_config(
    doc: Any,
    source: str = "config.yaml",
    base_dir: Path = Path("."),
    environ: Mapping[str, str] | None = None,
) -> Config:
    try:
        return _parse(Section(doc, "", source), base_dir, os.environ if environ is None else environ)
    except Invalid as bad:
        raise ConfigError(f"{source}: {bad}") from None


def _parse(top: Section, base_dir: Path, environ: Mapping[str, str]) -> Config:
    kafka = _kafka(top.section("kafka"), environ)
    inp, exporter, scoring = top.section("input"), top.section("exporter"), top.section("scoring")
    host, port = _listen(exporter)
    config = Config(
        kafka=kafka,
        detectors=_detectors(top, base_dir),
        input_format=inp.text("format", "json", INPUT_FORMATS),
        max_message_bytes=inp.integer("max_message_bytes", 1_048_576, 64),
        listen_host=host,
        listen_port=port,
        exporter_max_series=exporter.integer("max_series", 2000, 1),
        scoring_threads=scoring.integer("threads", 1, 1, 64),
        scoring_max_batch=scoring.integer("max_batch", 256, 1),
        source=top.source,
    )
    for section in (inp, exporter, scoring, top):
        section.done()
    return config


def _kafka(s: Section, environ: Mapping[str, str]) -> KafkaSettings:
    d = KafkaSettings()
    values = {
        "bootstrap_servers": s.text("bootstrap_servers", d.bootstrap_servers),
        "client_id": s.text("client_id", d.client_id),
        "group_id": s.text("group_id", d.group_id),
        "metrics_topic": s.text("metrics_topic", d.metrics_topic),
        "alert_topic": s.text("alert_topic", d.alert_topic),
        "dead_letter_topic": s.text("dead_letter_topic", d.dead_letter_topic),
        "auto_offset_reset": s.text("auto_offset_reset", d.auto_offset_reset, ("earliest", "latest")),
        "max_poll_records": s.integer("max_poll_records", d.max_poll_records, 1),
        "poll_timeout_ms": s.integer("poll_timeout_ms", d.poll_timeout_ms, 1, 60_000),
        "security_protocol": s.text("security_protocol", d.security_protocol, SECURITY_PROTOCOLS),
        "sasl_mechanism": s.text("sasl_mechanism", None, SASL_MECHANISMS),
        "sasl_username": s.text("sasl_username", None),
    }
    if "sasl_password" in s.doc:
        where = s.path_of("sasl_password")
        raise Invalid(f"{where}: secrets are not read from the file; set MONITOR_KAFKA_SASL_PASSWORD")
    s.done()
    for var, key in ENV_OVERRIDES.items():
        if environ.get(var):
            values[key] = environ[var]
    return KafkaSettings(**values)


def _listen(s: Section) -> tuple[str, int]:
    value = s.text("listen", "127.0.0.1:9308")
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise Invalid(f"{s.path_of('listen')}: must be HOST:PORT, got {show(value)}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _detectors(top: Section, base_dir: Path) -> tuple[DetectorConfig, ...]:
    items = top.get("detectors", [{}])
    if not isinstance(items, list) or not items:
        raise Invalid(f"detectors: must be a non-empty list, got {show(items)}")
    detectors = tuple(_detector(Section(item, f"detectors[{i}]", top.source), base_dir) for i, item in enumerate(items))
    names = [d.settings.name for d in detectors]
    if len(set(names)) != len(names):
        raise Invalid(f"detectors: names must be unique, got {names}")
    return detectors


def _detector(s: Section, base_dir: Path) -> DetectorConfig:
    window = s.integer("window", 32, 8, 4096)
    settings = DetectorSettings(
        name=s.text("name", "default"),
        series=s.text("series", "*"),
        features=s.names("features", ("value",)),
        window=window,
        stride=s.integer("stride", 4, 1, window),
        max_series=s.integer("max_series", 100_000, 1),
        threshold=_threshold(s.section("threshold")),
        alerting=_alerting(s.section("alerting")),
    )
    config = DetectorConfig(settings, _model(s.section("model"), base_dir, window), _training(s.section("training")))
    s.done()
    return config


def _threshold(s: Section) -> ThresholdSettings:
    d = ThresholdSettings()
    t = ThresholdSettings(
        warmup=s.integer("warmup", d.warmup, 0),
        history=s.integer("history", d.history, 8),
        k=s.number("k", d.k, 0.0),
        minimum=s.number("minimum", d.minimum, 0.0),
    )
    s.done()
    return t


def _alerting(s: Section) -> AlertSettings:
    d = AlertSettings()
    a = AlertSettings(
        for_windows=s.integer("for", d.for_windows, 1),
        resolve_after=s.integer("resolve_after", d.resolve_after, 1),
        critical_ratio=s.number("critical_ratio", d.critical_ratio, 1.0),
    )
    s.done()
    return a


def _model(s: Section, base_dir: Path, window: int) -> ModelSettings:
    d = ModelSettings()
    path = Path(s.text("path", str(d.path)))
    m = ModelSettings(
        path=path if path.is_absolute() else base_dir / path,
        kind=s.text("kind", d.kind, MODEL_KINDS),
        hidden=s.integer("hidden", d.hidden, 1, 4096),
        latent=s.integer("latent", d.latent, 1, 4096),
        layers=s.integer("layers", d.layers, 1, 8),
        score_tail=s.integer("score_tail", d.score_tail, 0, window),
    )
    s.done()
    return m


def _training(s: Section) -> TrainingSettings:
    d = TrainingSettings()
    t = TrainingSettings(
        epochs=s.integer("epochs", d.epochs, 1),
        batch_size=s.integer("batch_size", d.batch_size, 1),
        learning_rate=s.number("learning_rate", d.learning_rate, 1e-7, 1.0),
        validation_split=s.number("validation_split", d.validation_split, 0.05, 0.5),
        patience=s.integer("patience", d.patience, 1),
        max_windows=s.integer("max_windows", d.max_windows, 16),
        seed=s.integer("seed", d.seed, 0),
    )
    s.done()
    return t
