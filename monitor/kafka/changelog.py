"""The state changelog on Kafka: a compacted topic co-partitioned with the metrics topic. kafka-python only.

Partition p of the changelog holds the state of the series that come from metrics partition p, so a
replica that is assigned p restores it by reading that one changelog partition (as Kafka Streams does).
Records are written through the service's sink (of either client), so they are acknowledged by the same
`flush` that gates the offset commit. Reading uses a kafka-python consumer outside any group that never
creates topics, whichever client the daemon runs (a restore is not on the hot path).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewPartitions, NewTopic
from kafka.errors import InvalidPartitionsError, KafkaTimeoutError, TopicAlreadyExistsError

from monitor.config import KafkaSettings
from monitor.kafka.client import client_options, connect
from monitor.kafka.sink import ResendingSink
from monitor.logs import event

log = logging.getLogger(__name__)

TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(16 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.2",
}
"""Small segments and eager cleaning: compaction only cleans closed segments, and a restore reads all that is
not cleaned yet."""
RESTORE_TIMEOUT_S = 60.0
"""A restore that makes no progress for this long raises KafkaTimeoutError, which the run loop retries."""


class KafkaChangelog:
    def __init__(self, settings: KafkaSettings, topic: str, sink: ResendingSink) -> None:
        self.settings, self.topic, self.sink = settings, topic, sink
        self._consumer: KafkaConsumer | None = None
        self._partitions = 0
        """Partitions the topic is known to have."""

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.sink.send(self.topic, value, key, partition=partition)

    def read(self, partitions: Collection[int]) -> Iterator[tuple[int, bytes, bytes | None]]:
        """Each record of these partitions from the log start to the end found when the read began."""
        if not partitions:
            return
        consumer = self._reader()
        self._ensure(consumer, max(partitions) + 1)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        while remaining:
            batches = consumer.poll(timeout_ms=500)
            if batches:
                deadline = time.monotonic() + RESTORE_TIMEOUT_S
            elif time.monotonic() > deadline:
                raise KafkaTimeoutError(f"reading {self.topic} made no progress for {RESTORE_TIMEOUT_S:g}s")
            for tp, records in batches.items():
                for r in records:
                    if r.offset < ends[tp]:
                        yield tp.partition, r.key, r.value
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        consumer.assign([])

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)

    def _reader(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = connect(
                lambda: KafkaConsumer(
                    group_id=None,
                    enable_auto_commit=False,
                    allow_auto_create_topics=False,  # an auto-created changelog would not be compacted
                    **client_options(self.settings),
                ),
                self.settings,
            )
        return self._consumer

    def _ensure(self, consumer: KafkaConsumer, needed: int) -> None:
        """Create the compacted topic with as many partitions as the metrics topic (at least `needed`), or
        add partitions when the metrics topic grew."""
        if self._partitions >= needed:
            return
        consumer.topics()  # refresh the metadata: another replica may have created it meanwhile
        have = len(consumer.partitions_for_topic(self.topic) or ())
        want = max(needed, len(consumer.partitions_for_topic(self.settings.metrics_topic) or ()))
        if have < want:
            admin = connect(lambda: KafkaAdminClient(**client_options(self.settings)), self.settings)
            try:
                if have == 0:
                    admin.create_topics([NewTopic(self.topic, want, -1, topic_configs=TOPIC_CONFIGS)])
                else:
                    admin.create_partitions({self.topic: NewPartitions(total_count=want)})
                event(log, "changelog_partitions", topic=self.topic, partitions=want)
            except (TopicAlreadyExistsError, InvalidPartitionsError):
                pass  # another replica won the race
            finally:
                admin.close()
        self._partitions = max(have, want)
