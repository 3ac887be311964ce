"""The metrics source: a consumer in the monitor's group, offsets committed only when the service says so,
partition moves passed on to the checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Protocol

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaConnectionError, KafkaError

from monitor.config import KafkaSettings
from monitor.kafka.client import COMMIT_TIMEOUT_MS, METADATA_MAX_AGE_MS, client_options, commit_offset, connect
from monitor.records import Message

log = logging.getLogger(__name__)


class PartitionListener(Protocol):
    """Told which metrics partitions this replica gained or lost (see `monitor.service.checkpoint`)."""

    def on_revoked(self, partitions: Collection[int]) -> None: ...

    def on_assigned(self, partitions: Collection[int]) -> None:
        """The whole new assignment (eager protocol: kafka-python's default assignors)."""
        ...

    def on_lost(self, partitions: Collection[int]) -> None:
        """The group dropped this member: other members may have processed these partitions since."""
        ...


class _Rebalance(ConsumerRebalanceListener):
    """kafka-python calls these on its IO thread while `poll` (or `close`) blocks the run loop, so they
    only pass the partition numbers on; the listener acts on them from the loop."""

    def __init__(self, listener: PartitionListener, topic: str) -> None:
        self.listener, self.topic = listener, topic

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.listener.on_revoked(self._numbers(revoked))

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self.listener.on_assigned(self._numbers(assigned))

    def on_partitions_lost(self, lost: Collection[TopicPartition]) -> None:
        self.listener.on_lost(self._numbers(lost))

    def _numbers(self, partitions: Collection[TopicPartition]) -> set[int]:
        """The metrics topic's partitions: the feedback topic's follow them (co-partitioned by series)."""
        return {tp.partition for tp in partitions if tp.topic == self.topic}


class KafkaSource:
    """Polls the metrics topic (and the feedback topic, when given) in a consumer group; `commit` stores the
    offsets of all that was polled."""

    def __init__(
        self, settings: KafkaSettings, listener: PartitionListener | None = None, feedback: bool = False
    ) -> None:
        self.settings = settings
        self.consumer = connect(
            lambda: KafkaConsumer(
                group_id=settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset=settings.auto_offset_reset,
                max_poll_records=settings.max_poll_records,
                metadata_max_age_ms=METADATA_MAX_AGE_MS,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=min(3000, settings.session_timeout_ms // 3),
                **client_options(settings),
            ),
            settings,
        )
        # Fetch the topics' metadata before joining the group: a leader that joins without it assigns
        # nothing (or leaves a topic out) and rebalances again at the next metadata refresh, and a commit
        # (a SIGTERM's last one, say) that meets that rebalance is refused.
        topics = [settings.metrics_topic, *([settings.feedback_topic] if feedback else [])]
        for topic in topics:
            if self.consumer.partitions_for_topic(topic) is None:
                log.warning("topic %s does not exist yet; consuming once it does", topic)
        rebalance = _Rebalance(listener, settings.metrics_topic) if listener else None
        self.consumer.subscribe(topics, listener=rebalance)
        self._coordinator_found = False

    def poll(self) -> list[Message]:
        """The next records; KafkaConnectionError when none came because no broker answers, so the run loop
        reports it instead of mistaking an outage for a quiet topic."""
        batches = self.consumer.poll(timeout_ms=self.settings.poll_timeout_ms)
        if not batches and self._coordinator_lost():
            raise KafkaConnectionError(f"no broker at {self.settings.bootstrap_servers} answers for the group")
        return [
            Message(
                r.value,
                r.timestamp / 1000.0 if r.timestamp >= 0 else None,
                r.topic,
                r.partition,
                r.offset,
                r.key,
            )
            for records in batches.values()
            for r in records
        ]

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def commit(self, limits: Mapping[int, int] | None = None) -> None:
        """Commit the position after every record `poll` returned, no further than `limits` in the metrics
        topic's partitions (call only after the sink flushed)."""
        offsets = None
        if limits:
            offsets = {}
            for tp in self.consumer.assignment():
                position = self.consumer.position(tp, timeout_ms=0)
                if position is not None:
                    offset = commit_offset(self.settings, tp.topic, tp.partition, position, limits)
                    offsets[tp] = OffsetAndMetadata(offset, "", -1)
        self.consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)

    def _coordinator_lost(self) -> bool:
        """kafka-python has no public "broker reachable" call; its coordinator lookup is the closest signal
        (it turns unknown as soon as the connection to the group coordinator drops). Before it was first
        found, the consumer is still starting, not cut off."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        unknown = coordinator is not None and coordinator.coordinator_unknown()
        self._coordinator_found = self._coordinator_found or not unknown
        return unknown and self._coordinator_found

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the log end per assigned partition, from what the last fetches reported; a
        partition whose position needs the broker (which may be away) is left out rather than waited for."""
        lags = {}
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is None:
                continue
            try:
                position = self.consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if position is not None:
                lags[(tp.topic, tp.partition)] = max(end - position, 0)
        return lags

    def close(self) -> None:
        self.consumer.close(autocommit=False)
