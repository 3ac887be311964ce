"""Kafka for the command-line tools and the demo: read a time range, produce points, follow a topic.

The daemon's edges (consumer group, alert sink, topic admin) are in `monitor.kafka.client`; these read and
write outside any consumer group.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from kafka import KafkaConsumer, TopicPartition

from monitor.config import KafkaSettings
from monitor.errors import MonitorError
from monitor.kafka.client import client_options, connect
from monitor.kafka.sink import KafkaSink
from monitor.records import Message, Point, encode_point


def read_range(
    settings: KafkaSettings, topic: str, start: float | None = None, end: float | None = None, follow: bool = False
) -> Iterator[Message]:
    """Every record of `topic` with a record timestamp in [start, end), found with `offsets_for_times`;
    without `start` from the first record, without `end` up to the log end as it is when reading starts.
    With `follow`, it then keeps waiting for new records until the caller stops iterating.

    Used to train on what the metrics topic already holds and to read the alert topic; it reads outside
    any consumer group.
    """
    consumer = connect(
        lambda: KafkaConsumer(enable_auto_commit=False, group_id=None, **client_options(settings)), settings
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise MonitorError(f"topic {topic!r} does not exist at {settings.bootstrap_servers}")
        consumer.assign(partitions)
        stops = _offsets_at(consumer, partitions, end)
        firsts = consumer.beginning_offsets(partitions) if start is None else _offsets_at(consumer, partitions, start)
        for tp, offset in firsts.items():
            consumer.seek(tp, offset)
        remaining = {tp for tp in partitions if consumer.position(tp) < stops[tp]}
        while remaining or follow:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for r in records:
                    if follow or r.offset < stops[tp]:
                        yield Message(r.value, r.timestamp / 1000.0, r.topic, r.partition, r.offset, r.key)
                if consumer.position(tp) >= stops[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close(autocommit=False)


def _offsets_at(
    consumer: KafkaConsumer, partitions: list[TopicPartition], ts: float | None
) -> dict[TopicPartition, int]:
    """The first offset at or after `ts` per partition; the log end where nothing is that late, or for None."""
    ends = consumer.end_offsets(partitions)
    if ts is None:
        return ends
    found = consumer.offsets_for_times({tp: int(ts * 1000) for tp in partitions})
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in partitions}


def produce_points(settings: KafkaSettings, topic: str, points: Iterable[Point]) -> int:
    """Send points in the native format, keyed by series; returns how many were acknowledged."""
    sink = KafkaSink(settings)
    count = 0
    try:
        for point in points:
            sink.send(topic, encode_point(point), point.series.encode())
            count += 1
            if count % 10_000 == 0:
                sink.flush()
        sink.flush()
    finally:
        sink.close()
    return count


def follow_topic(settings: KafkaSettings, topic: str, stop: threading.Event) -> Iterator[bytes]:
    """Values of `topic` from its start until `stop` is set (outside any group; for the demo and tools)."""
    consumer = connect(
        lambda: KafkaConsumer(
            topic, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **client_options(settings)
        ),
        settings,
    )
    try:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    yield r.value
    finally:
        consumer.close(autocommit=False)
