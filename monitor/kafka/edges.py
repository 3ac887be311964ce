"""The metrics source and the sink of the client `kafka.client` names: kafka-python (the default) or
librdkafka through confluent-kafka (the `confluent` extra), behind the same interfaces."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from monitor.config import KafkaSettings
from monitor.errors import ConfigError
from monitor.kafka.sink import KafkaSink, ResendingSink
from monitor.kafka.source import KafkaSource, PartitionListener

if TYPE_CHECKING:
    from monitor.kafka.confluent import ConfluentSource


def open_sink(settings: KafkaSettings) -> ResendingSink:
    """The producer of alerts, dead letters and state records."""
    if settings.client == "kafka-python":
        return KafkaSink(settings)
    return _confluent().ConfluentSink(settings)


def open_source(
    settings: KafkaSettings, listener: PartitionListener | None = None, feedback: bool = False
) -> KafkaSource | ConfluentSource:
    """The consumer of the metrics topic (and the feedback topic) in the monitor's group; `listener` hears
    of the metrics partitions' moves."""
    if settings.client == "kafka-python":
        return KafkaSource(settings, listener=listener, feedback=feedback)
    return _confluent().ConfluentSource(settings, listener=listener, feedback=feedback)


def _confluent() -> ModuleType:
    """The librdkafka client's module, imported only when chosen (an optional dependency)."""
    try:
        from monitor.kafka import confluent
    except ImportError:
        raise ConfigError(
            "kafka.client: confluent-kafka is not installed; pip install 'anomaly-monitor[confluent]'"
        ) from None
    return confluent
