"""`Service(overlap=True)`: a poll is scored in a thread while the next is read, and that changes nothing
about what is published or committed: the same alerts in the same order, and no commit ever covers a
record whose alerts were not yet flushed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from monitor.engine.detector import Detector, Engine
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health
from monitor.records import Message, Point, encode_point
from monitor.service.checkpoint import Checkpoints
from monitor.service.loop import Service

from .test_checkpoint import SERIES, MemoryChangelog, alert_keys, uninterrupted
from .test_checkpoint import engine as checkpoint_engine
from .test_checkpoint import stream as checkpoint_stream
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


class Timeline(ListSource):
    """The service's source, and the log of what happened when: polls windowed (`Engine.window*`), scorings
    started and ended (in the scoring thread), tasks run (in the loop thread)."""

    def __init__(self, batches: list[list[Message]]) -> None:
        super().__init__(batches)
        self.events: list[str] = []
        self.windowed = 0

    def after_step(self, points, outcome) -> None:
        self.events.append("task")


class WatchingScorer(SlowScorer):
    """Holds each scoring until the loop has windowed the poll after it (at most `patience` seconds), and
    notes whether it came meanwhile."""

    def __init__(self, timeline: Timeline, polls: int, patience: float = 0.5) -> None:
        super().__init__()
        self.timeline, self.polls, self.patience = timeline, polls, patience
        self.scored = 0
        self.next_windowed_meanwhile: list[bool] = []

    def score(self, series, batch, start=None, end=None):
        self.timeline.events.append("score")
        self.scored += 1
        deadline = time.monotonic() + self.patience
        while self.timeline.windowed <= self.scored < self.polls and time.monotonic() < deadline:
            time.sleep(0.001)
        self.next_windowed_meanwhile.append(self.timeline.windowed > self.scored)
        result = super().score(series, batch)
        self.timeline.events.append("scored")
        return result


def test_the_next_poll_is_windowed_while_one_is_scored_and_tasks_run_between_scorings(monkeypatch):
    """With `overlap`, the loop decodes, routes and windows the next poll while the scoring thread scores
    one (the forward passes leave the interpreter lock free), but starts its scoring only after that one
    is finished: tasks (model reloads, retraining) and feedback still act with nothing in flight."""
    messages = stream(points=90)
    polls = [messages[i : i + 60] for i in range(0, len(messages), 60)]
    n = len(polls)
    timeline = Timeline(polls)
    scorer = WatchingScorer(timeline, n)
    for method in ("window", "window_columns"):
        original = getattr(Engine, method)

        def counted(self, *args, original=original):
            timeline.windowed += 1
            return original(self, *args)

        monkeypatch.setattr(Engine, method, counted)
    engine = Engine([Detector(settings(stride=1), scorer)])
    service = Service(engine, timeline, ListSink(), Exporter(), Health(), tasks=[timeline], overlap=True)
    assert service.run().messages == len(messages)

    assert scorer.scored == n and timeline.windowed == n, "every poll has windows to score"
    assert scorer.next_windowed_meanwhile == [True] * (n - 1) + [False]
    assert timeline.events == ["score", "scored", "task"] * n, timeline.events


class Reassigned(ListSource):
    """A source whose partitions grow to `gained` in the poll `at` (as a consumer's rebalance callback
    does inside `poll`), noting the offsets committed."""

    def __init__(self, batches: list[list[Message]], checkpoints: Checkpoints, at: int, gained: set[int]) -> None:
        super().__init__(batches)
        self.checkpoints, self.at, self.gained = checkpoints, at, gained
        self.polls = 0
        self.committed: dict[int, int] = {}
        self._position: dict[int, int] = {}

    def poll(self) -> list[Message] | None:
        self.polls += 1
        if self.polls == self.at:
            self.checkpoints.on_assigned(self.gained)
        batch = super().poll()
        self._position |= {m.partition: m.offset + 1 for m in batch or ()}
        return batch

    def commit(self, limits=None) -> None:
        """`limits`: where to stop in some partitions; the others are committed up to what was polled."""
        self.committed |= {p: min(at, (limits or {}).get(p, at)) for p, at in self._position.items()}


def test_a_poll_that_brings_partitions_waits_for_their_state_before_it_is_taken_in():
    """A rebalance inside a poll: that poll is taken in only after the poll in flight is finished and the
    gained partitions' state is restored (`Service._sync`), never early onto windows the restore replaces;
    the two replicas together publish exactly the alerts of one uninterrupted run."""
    messages = checkpoint_stream()
    half = len(messages) // 2
    changelog = MemoryChangelog()

    first_engine = checkpoint_engine()
    first_checkpoints = Checkpoints(first_engine, changelog, interval_s=0.0)
    first = Reassigned([messages[i : i + 30] for i in range(0, half, 30)], first_checkpoints, 0, set())
    first_checkpoints.on_assigned({0, 1, 2})
    first_sink = ListSink()
    Service(first_engine, first, first_sink, Exporter(), Health(), checkpoints=first_checkpoints).run()
    changelog.flush()

    rest = [m for m in messages[half:] if m.offset >= first.committed[m.partition]]
    own = [m for m in rest if m.partition == 0]
    gained = [m for m in rest if m.partition != 0]
    batches = [own[:40], own[40:80], gained + own[80:]]
    second_engine = checkpoint_engine()
    second_checkpoints = Checkpoints(second_engine, changelog, interval_s=0.0)
    second = Reassigned(batches, second_checkpoints, 3, {0, 1, 2})
    second_checkpoints.on_assigned({0})
    second_sink = ListSink()
    Service(
        second_engine, second, second_sink, Exporter(), Health(), checkpoints=second_checkpoints, overlap=True
    ).run()

    expected, _ = uninterrupted(messages)
    assert second_checkpoints.counts["restored"] == len(SERIES), "partition 0's series at start, the rest when gained"
    assert any(a.series == SERIES[4] for a in second_sink.alerts), "a gained partition's anomaly is in the rest"
    assert alert_keys(first_sink.alerts + second_sink.alerts) == expected
