"""`Service(overlap=True)`: a poll is scored in a thread while the next is read, and that changes nothing
about what is published or committed: the same alerts in the same order, and no commit ever covers a
record whose alerts were not yet flushed."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from monitor.engine.detector import Detector, Engine
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health
from monitor.records import Message, Point, encode_point
from monitor.service.checkpoint import Checkpoints
from monitor.service.loop import Service

from .test_detector import FakeScorer, normal, settings
from .test_properties import ListSink, ListSource

T0 = 1_767_225_600.0


class CommitLog(ListSource):
    """Records, at every commit, how many messages had been polled and how many the service had finished."""

    def __init__(self, batches: list[list[Message]], service: list[Service]) -> None:
        super().__init__(batches)
        self.polled = 0
        self.commits: list[tuple[int, int]] = []
        self._service = service

    def poll(self) -> list[Message] | None:
        batch = super().poll()
        self.polled += len(batch or [])
        return batch

    def commit(self, limits=None) -> None:
        self.commits.append((self.polled, self._service[0].summary.messages))


class SlowScorer(FakeScorer):
    """Scores off the loop's thread, slowly enough that the next poll is read meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def score(self, series, batch, start=None, end=None):
        self.threads.add(threading.current_thread().name)
        threading.Event().wait(0.002)
        return super().score(series, batch)


def stream(series: int = 6, points: int = 120) -> list[Message]:
    spikes = {(1, 50), (4, 90)}
    out = []
    for i in range(points):
        for s in range(series):
            value = 8.0 if (s, i) in spikes else normal(i)
            point = Point(f"host-{s}/cpu", T0 + 60.0 * i, {"value": value})
            out.append(Message(encode_point(point), None, "metrics", 0, len(out)))
    return out


def run(overlap: bool, batch_size: int, interval: float) -> tuple[ListSink, CommitLog, SlowScorer]:
    messages = stream()
    batches = [messages[i : i + batch_size] for i in range(0, len(messages), batch_size)]
    scorer = SlowScorer()
    holder: list[Service] = []
    source, sink = CommitLog(batches, holder), ListSink()
    engine = Engine([Detector(settings(stride=1), scorer)])
    service = Service(engine, source, sink, Exporter(), Health(), overlap=overlap, commit_interval_s=interval)
    holder.append(service)
    summary = service.run()
    assert summary.messages == len(messages)
    return sink, source, scorer


@pytest.mark.parametrize(("batch_size", "interval"), [(7, 0.0), (25, 0.05), (100, 10.0)])
def test_overlap_publishes_the_same_alerts_and_never_commits_unfinished_records(batch_size, interval):
    serial_sink, serial_source, serial_scorer = run(False, batch_size, interval)
    sink, source, scorer = run(True, batch_size, interval)
    assert [a.alert_id for a in serial_sink.alerts if a.status == "firing"], "the stream has anomalies"
    assert sink.alerts == serial_sink.alerts
    assert all(polled == finished for polled, finished in source.commits), source.commits
    assert source.commits[-1] == (len(stream()),) * 2, "everything is committed at the end"
    assert scorer.threads == {"scoring_0"} and serial_scorer.threads == {threading.current_thread().name}
    assert len(serial_source.commits) >= len(source.commits)


def test_without_overlap_every_poll_is_committed():
    _, source, _ = run(False, 50, 10.0)
    assert len(source.commits) == int(np.ceil(len(stream()) / 50))


class EventLog:
    """Source, sink and changelog of one `Service` writing to one ordered log of what happened."""

    def __init__(self, batches: list[list[Message]]) -> None:
        self.events: list[str] = []
        self.batches = batches

    def poll(self) -> list[Message] | None:
        self.events.append("poll")
        return self.batches.pop(0) if self.batches else None

    def commit(self, limits=None) -> None:
        self.events.append("commit")

    def publish(self, alert) -> None:
        self.events.append("publish")

    def dead_letter(self, message, rejected) -> None:
        self.events.append("dead_letter")

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.events.append("state")

    def flush(self) -> None:
        self.events.append("flush")

    def read(self, partitions):
        return iter(())

    def assigned(self) -> bool:
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        return {}

    def close(self) -> None:
        pass


@pytest.mark.parametrize("overlap", [False, True])
def test_the_real_service_flushes_alerts_dead_letters_and_state_before_it_commits(overlap):
    messages = stream()
    messages[40] = Message(b"{not json", None, "metrics", 0, 40)
    log = EventLog([messages[i : i + 30] for i in range(0, len(messages), 30)])
    engine = Engine([Detector(settings(stride=1), SlowScorer())])
    checkpoints = Checkpoints(engine, log, interval_s=0.0)
    checkpoints.on_assigned([0])
    Service(engine, log, log, Exporter(), Health(), checkpoints=checkpoints, overlap=overlap).run()

    events = log.events
    assert {"publish", "dead_letter", "state", "commit"} <= set(events), events
    unacknowledged: set[str] = set()
    written_since_commit = False
    for i, name in enumerate(events):
        if name in ("publish", "dead_letter", "state"):
            unacknowledged.add(name)
            written_since_commit |= name == "state"
        elif name == "flush":
            unacknowledged.clear()
        elif name == "commit":
            assert not unacknowledged, f"commit at event {i} before {unacknowledged} were flushed: {events[: i + 1]}"
            assert written_since_commit, f"commit at event {i} without a checkpoint before it"
            written_since_commit = False
    last_commit = len(events) - 1 - events[::-1].index("commit")
    assert not {"publish", "dead_letter", "state"} & set(events[last_commit:]), "the end commits everything"


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("interval_s", [0.0, 3600.0])
def test_with_checkpoints_the_sink_is_flushed_only_where_a_commit_follows(overlap, interval_s):
    """A poll's alerts are handed to the sink at once but not waited for one poll at a time: the checkpoint
    flushes them with the state before it commits (at 100,000 series of a young fleet, the per-poll wait
    was a broker round trip in most polls)."""
    messages = stream()
    log = EventLog([messages[i : i + 30] for i in range(0, len(messages), 30)])
    engine = Engine([Detector(settings(stride=1), SlowScorer())])
    checkpoints = Checkpoints(engine, log, interval_s=interval_s)
    checkpoints.on_assigned([0])
    Service(engine, log, log, Exporter(), Health(), checkpoints=checkpoints, overlap=overlap).run()

    events = log.events
    between_polls = " ".join(events).split("poll")
    assert sum("publish" in part for part in between_polls) >= 2, f"alerts published after one poll only: {events}"
    followed = [events[i + 1] for i, name in enumerate(events[:-1]) if name == "flush"]
    assert followed and set(followed) == {"commit"}, events
    assert events[-1] == "flush", "the run closes with a flush of what is left"
