"""Wiring for `monitor run`: models, engine, source, sink, exporter and HTTP endpoint from one Config."""

from __future__ import annotations

import logging
from collections.abc import Callable

from monitor.config import Config
from monitor.detector import Detector, Engine
from monitor.exporter import Exporter, Health, serve
from monitor.service import Service, Sink, Source

log = logging.getLogger(__name__)


def build_engine(config: Config) -> Engine:
    """Load every detector's model; a missing or incompatible artifact stops the start with its path."""
    from monitor.models import TorchScorer

    detectors = []
    for d in config.detectors:
        scorer = TorchScorer.from_path(d.model.path, threads=config.scoring_threads)
        detectors.append(Detector(d.settings, scorer))
        log.info("detector %s: model %s (%s) from %s", d.settings.name, scorer.version, scorer.kind, d.model.path)
    return Engine(detectors)


def build_service(config: Config, input_path: str | None = None) -> tuple[Service, Callable[[], None]]:
    """The service and a function that releases what it holds (the HTTP server)."""
    engine = build_engine(config)
    exporter, health = Exporter(config.exporter_max_series), Health()
    for d in engine.detectors:
        exporter.set_model(d.settings.name, d.scorer.version, d.scorer.kind)
    source, sink = _edges(config, input_path)
    server = serve(exporter, health, config.listen_host, config.listen_port)
    log.info("serving /metrics, /healthz, /readyz on http://%s:%d", config.listen_host, server.server_port)
    service = Service(engine, source, sink, exporter, health, config.max_message_bytes)
    return service, server.shutdown


def _edges(config: Config, input_path: str | None) -> tuple[Source, Sink]:
    if input_path is not None:
        from monitor.file_io import FileSource, StdoutSink

        return FileSource(input_path), StdoutSink()
    from monitor.kafka_io import KafkaSink, KafkaSource, ensure_topics

    k = config.kafka
    ensure_topics(k, [k.alert_topic, k.dead_letter_topic])
    log.info("consuming %s at %s as group %s", k.metrics_topic, k.bootstrap_servers, k.group_id)
    return KafkaSource(k), KafkaSink(k)
