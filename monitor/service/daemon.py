"""Wiring for `monitor run`: models, engine, source, sink, exporter and HTTP endpoint from one Config."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from monitor import __version__
from monitor.config import Config
from monitor.engine.detector import Detector, Engine
from monitor.formats import REASONS, decoder, poll_decoder
from monitor.logs import event
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health
from monitor.observability.http import scheme, serve
from monitor.service.checkpoint import Checkpoints
from monitor.service.edges import Sink, Source, Task
from monitor.service.loop import Service
from monitor.service.reload import ModelReloader, load_scorer
from monitor.service.retraining import Retrainer
from monitor.service.runtime import HeapTrim, settle_for_a_long_run

log = logging.getLogger(__name__)


def build_engine(config: Config) -> Engine:
    """Load every detector's model; a missing or incompatible artifact stops the start with its path."""
    detectors = []
    for d in config.detectors:
        scorer = load_scorer(
            d, config.scoring_threads, None, config.scoring_backend, config.scoring_max_batch, config.scoring_device
        )
        detectors.append(Detector(d.settings, scorer))
        event(
            log,
            "model_loaded",
            detector=d.settings.name,
            version=scorer.version,
            kind=scorer.kind,
            backend=scorer.backend,
            traced=scorer.traced,
            device=scorer.device,
            path=d.model.path,
        )
    return Engine(detectors)


def build_service(config: Config, input_path: str | None = None) -> tuple[Service, Callable[[], None]]:
    """The service and a function that releases what it holds (the HTTP server).

    The endpoint starts first, so probes are answered (and `/readyz` says what it waits for) while the
    models load and Kafka connects.
    """
    exporter, health = Exporter(config.exporter_max_series), Health(config.http.stuck_after_s)
    server = serve(exporter, health, config.listen_host, config.listen_port, config.http)
    endpoint = f"{scheme(config.http)}://{config.listen_host}:{server.server_port}"
    event(log, "started", version=__version__, config=config.source, endpoint=endpoint)
    try:
        engine = build_engine(config)
        for d in engine.detectors:
            exporter.set_model(d.settings.name, d.scorer.version, d.scorer.kind)
        health.check("model", True)
        source, sink, transient, checkpoints = _edges(config, input_path, engine)
        if input_path is None:
            exporter.expect_topic(config.kafka.metrics_topic, ("ok", *REASONS))
            exporter.expect_topic(config.kafka.feedback_topic, ("ok", *REASONS))
    except BaseException:
        server.shutdown()
        raise
    decode = decoder(config.input_format, config.max_message_bytes, config.input_options)
    decode_poll = poll_decoder(config.input_format, config.max_message_bytes, config.input_options)
    tasks = _tasks(config, engine, exporter)
    service = Service(
        engine, source, sink, exporter, health, decode, decode_poll, transient, tasks, checkpoints,
        overlap=config.scoring_overlap, commit_interval_s=config.checkpoint.interval_s,
        feedback_topic=None if input_path is not None else config.kafka.feedback_topic,
        max_message_bytes=config.max_message_bytes,
    )  # fmt: skip
    restore = settle_for_a_long_run()

    def release() -> None:
        server.shutdown()
        restore()

    return service, release


def _tasks(config: Config, engine: Engine, exporter: Exporter) -> list[Task]:
    """Hot reload of every detector's model (polled, and at once on SIGHUP); scheduled retraining if set;
    the C heap's trim."""
    from monitor.models.store import signature

    by_name = {d.settings.name: d for d in config.detectors}
    watched = [
        (d, by_name[d.settings.name].model.path, by_name[d.settings.name].model.reload_interval)
        for d in engine.detectors
    ]
    reloader = ModelReloader(
        watched,
        load=lambda d: load_scorer(
            by_name[d.settings.name],
            config.scoring_threads,
            d.scorer,
            config.scoring_backend,
            config.scoring_max_batch,
            config.scoring_device,
        ),
        signature=signature,
        on_swap=lambda d: exporter.set_model(d.settings.name, d.scorer.version, d.scorer.kind),
    )
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGHUP, lambda *_: reloader.request())
    retrainers = [
        Retrainer(d, by_name[d.settings.name], config.training_threads)
        for d in engine.detectors
        if by_name[d.settings.name].retraining.every > 0
    ]
    return [reloader, *retrainers, HeapTrim()]


def _edges(
    config: Config, input_path: str | None, engine: Engine
) -> tuple[Source, Sink, tuple[type[Exception], ...], Checkpoints | None]:
    """Source and sink, the errors that mean the broker did not answer (retried), and the checkpoints
    that keep the engine's state in a changelog (Kafka only: a file is replayed from its start)."""
    if input_path is not None:
        from monitor.service.files import FileSource, StdoutSink

        return FileSource(input_path), StdoutSink(), (), None
    from monitor.kafka.changelog import KafkaChangelog
    from monitor.kafka.client import BROKER_AWAY, ensure_topics, partition_count
    from monitor.kafka.edges import open_sink, open_source

    k = config.kafka
    ensure_topics(k, [k.alert_topic, k.dead_letter_topic])
    ensure_topics(k, [k.feedback_topic], partition_count(k, k.metrics_topic))
    log.info("consuming %s at %s as group %s with %s", k.metrics_topic, k.bootstrap_servers, k.group_id, k.client)
    sink = open_sink(k)
    checkpoints = None
    if config.checkpoint.enabled:
        changelog = KafkaChangelog(k, config.checkpoint.topic_for(k.group_id), sink)
        checkpoints = Checkpoints(
            engine,
            changelog,
            config.checkpoint.interval_s,
            max_replay_s=config.checkpoint.max_replay_s,
            pages=config.checkpoint.pages,
        )
    return open_source(k, listener=checkpoints, feedback=True), sink, BROKER_AWAY, checkpoints
