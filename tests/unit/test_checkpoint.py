"""monitor.service.checkpoint: state written before commits, restored on assignment; crashes lose no alert."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import defaultdict
from collections.abc import Collection, Iterator

import numpy as np
import pytest

from monitor.engine.detector import Detector, Engine
from monitor.engine.verdicts import Outcome
from monitor.formats.native import decode_json
from monitor.records import Message, Point, encode_point
from monitor.service.checkpoint import PAGES, Checkpoints
from monitor.service.checkpoint_codec import decode_page

from .test_detector import T0, FakeScorer, normal, pt, settings

PARTITIONS = 3
SERIES = [f"web-{i:02d}/cpu" for i in range(6)]


class MemoryChangelog:
    """A compacted topic in memory; `flush` makes queued records visible (as acknowledged ones)."""

    def __init__(self) -> None:
        self.log: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        self.queued: list[tuple[int, bytes, bytes | None]] = []

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.queued.append((partition, key, value))

    def flush(self, keep: int | None = None) -> None:
        """Acknowledge the queued records; `keep` acknowledges only the first few (a crash mid-write)."""
        for partition, key, value in self.queued[:keep]:
            self.log[partition].append((key, value))
        self.queued.clear()

    def read(self, partitions: Collection[int]) -> Iterator[tuple[int, bytes, bytes | None]]:
        for partition in sorted(partitions):
            for key, value in self.log[partition]:
                yield partition, key, value

    def close(self) -> None:
        pass


def engine() -> Engine:
    return Engine([Detector(settings(window=8, stride=2), FakeScorer(window=8))])


def stream(steps: int = 160) -> list[Message]:
    """Messages of SERIES over PARTITIONS, one point each, with two anomalies, offsets per partition."""
    offsets = [0] * PARTITIONS
    messages = []
    for i in range(steps):
        for n, series in enumerate(SERIES):
            value = 4.0 if (n == 1 and 60 <= i < 66) or (n == 4 and 100 <= i < 103) else normal(i + n)
            partition = n % PARTITIONS
            raw = encode_point(pt(series, i, value))
            messages.append(Message(raw, None, "metrics", partition, offsets[partition], series.encode()))
            offsets[partition] += 1
    return messages


def points_of(message: Message) -> list[Point]:
    points = decode_json(message.value)
    assert isinstance(points, list)
    return points


def admitted(checkpoints: Checkpoints, messages: list[Message]) -> Outcome:
    """What the engine makes of the points of `messages` that `checkpoints` lets through, routed once as
    the service's decoding routes them."""
    engine = checkpoints.engine
    return engine.finish(engine.start([r for m in messages for r in checkpoints.admit(m, engine.routed(points_of(m)))]))


def alert_keys(alerts) -> set[tuple]:
    return {(a.alert_id, a.status, a.at, a.score) for a in alerts}


def uninterrupted(messages: list[Message]) -> tuple[set[tuple], set[tuple[str, float]]]:
    e = engine()
    outcome = e.process([p for m in messages for p in points_of(m)])
    return alert_keys(outcome.alerts), {(v.series, v.ts) for v in outcome.verdicts}


class Replica:
    """One daemon, in the service's order: admit, process, publish, flush; every `every` steps (the
    checkpoint interval) write the changed state that is due (every series at least each `max_replay`
    steps), flush, commit no further than the first record some written state lacks. A crash can strike
    between any two."""

    def __init__(
        self,
        changelog: MemoryChangelog,
        committed: dict[int, int],
        partitions: set[int],
        every: int = 1,
        max_replay: int = 0,
        pages: int = PAGES,
    ) -> None:
        self.engine = engine()
        self.steps = 0
        self.checkpoints = Checkpoints(
            self.engine, changelog, interval_s=every, clock=lambda: self.steps, max_replay_s=max_replay, pages=pages
        )
        self.changelog, self.committed = changelog, committed
        self.position = dict(committed)
        """Where this incarnation reads: the committed offsets when it starts."""
        self.rebalance(partitions)
        self.published: list = []
        self.scored: set[tuple[str, float]] = set()

    def rebalance(self, partitions: set[int]) -> list[tuple[str, str]]:
        """kafka-python keeps the position of a kept partition; a gained one starts at the committed offset."""
        for p in set(self.position) - partitions:
            del self.position[p]
        self.position |= {p: self.committed.get(p, 0) for p in partitions - set(self.position)}
        self.checkpoints.on_assigned(partitions)
        released = self.checkpoints.sync()
        assert_queued_are_marked(self.checkpoints)
        return released

    def todo(self, messages: list[Message]) -> list[Message]:
        return [m for m in messages if m.partition in self.position and m.offset >= self.position[m.partition]]

    def step(self, batch: list[Message], crash: str | None = None, rng: random.Random | None = None) -> None:
        self.steps += 1
        for m in batch:
            self.position[m.partition] = m.offset + 1
        outcome = admitted(self.checkpoints, batch)
        self.scored |= {(v.series, v.ts) for v in outcome.verdicts}
        if crash == "before_publish":
            return
        self.published += outcome.alerts
        self.checkpoints.processed(outcome.evicted)
        if crash == "before_checkpoint" or not self.checkpoints.due():
            return
        self.checkpoints.write()
        keep = rng.randrange(len(self.changelog.queued) + 1) if crash == "mid_checkpoint" and rng else None
        self.changelog.flush(keep)
        if crash in ("mid_checkpoint", "before_commit"):
            return
        limits = self.checkpoints.replay_from()
        self.committed.update({p: min(o, limits.get(p, o)) for p, o in self.position.items()})
        self.checkpoints.committed()
        assert_queued_are_marked(self.checkpoints)


def assert_queued_are_marked(checkpoints: Checkpoints) -> None:
    """The series queued for writing are exactly those whose origin says so (`_Origin.dirty`, which `admit`
    reads instead of the queue), each under its origin's partition."""
    queued = {(key, partition) for partition, dirty in checkpoints._dirty_in.items() for key in dirty}
    assert {(key, origin.partition) for key, origin in checkpoints._origins.items() if origin.dirty} == queued


@pytest.mark.parametrize("pages", [1, PAGES])  # every series of a partition in one page, or one series a page
@pytest.mark.parametrize("max_replay", [0, 5])
@pytest.mark.parametrize("seed", range(4))
def test_crashes_at_random_points_give_the_alerts_of_an_uninterrupted_run(seed, max_replay, pages):
    rng = random.Random(seed)
    messages = stream()
    expected_alerts, expected_windows = uninterrupted(messages)
    changelog, committed = MemoryChangelog(), {}
    everything = set(range(PARTITIONS))
    every = 1 + seed % 3  # checkpoints every step, or every second or third step

    def replica() -> Replica:
        return Replica(changelog, committed, everything, every, max_replay, pages)

    current, published, scored, crashes = replica(), [], set(), 0
    while todo := current.todo(messages):
        batch = todo[: rng.randint(1, 40)]
        crash = rng.choice([None, None, None, "before_publish", "before_checkpoint", "mid_checkpoint", "before_commit"])
        current.step(batch, crash, rng)
        if crash:
            crashes += 1
            published += current.published
            scored |= current.scored
            current = replica()  # a restart: nothing kept in memory
    published += current.published
    scored |= current.scored
    assert crashes >= 3
    assert alert_keys(published) == expected_alerts
    assert len(expected_alerts) == 4  # two anomalies, each firing then resolved
    assert scored == expected_windows, "every window scored by some incarnation"


def test_a_restart_needs_no_new_warm_up():
    messages = stream()
    changelog, committed = MemoryChangelog(), {}
    first = Replica(changelog, committed, set(range(PARTITIONS)))
    first.step(first.todo(messages)[:300])
    second = Replica(changelog, committed, set(range(PARTITIONS)))
    assert second.engine.detectors[0].warming_up() == 0
    assert second.checkpoints.counts["restored"] == len(SERIES)
    before = first.engine.detectors[0]
    after = second.engine.detectors[0]
    for series in SERIES:
        a, b = before.snapshot(series), after.snapshot(series)
        np.testing.assert_array_equal(a["window"]["data"], b["window"]["data"])
        np.testing.assert_array_equal(a["threshold"]["sums"], b["threshold"]["sums"])
        assert a["alert"] == b["alert"]


@pytest.mark.parametrize("pages", [1, PAGES])
def test_a_restore_decodes_only_the_last_record_of_each_page(monkeypatch, pages):
    import monitor.service.checkpoint as checkpoint

    messages = stream()
    changelog, committed = MemoryChangelog(), {}
    first = Replica(changelog, committed, set(range(PARTITIONS)), pages=pages)
    for _ in range(5):  # five rounds of 60 messages: every page written five times
        first.step(first.todo(messages)[:60])
    keys = {(p, key) for p, records in changelog.log.items() for key, _ in records}
    assert len(keys) == (PARTITIONS if pages == 1 else len(SERIES)), "a page a partition, or a page a series"
    assert sum(len(records) for records in changelog.log.values()) == 5 * len(keys)
    decoded = []
    monkeypatch.setattr(checkpoint, "decode_page", lambda key, raw: decoded.append(raw) or decode_page(key, raw))
    second = Replica(changelog, committed, set(range(PARTITIONS)), pages=pages)

    assert len(decoded) == len(keys)
    assert second.checkpoints.counts["restored"] == len(SERIES)
    for series in SERIES:
        a, b = first.engine.detectors[0].snapshot(series), second.engine.detectors[0].snapshot(series)
        np.testing.assert_array_equal(a["window"]["data"], b["window"]["data"])
        np.testing.assert_array_equal(a["threshold"]["sums"], b["threshold"]["sums"])


def test_a_partition_moves_to_another_replica_with_its_state():
    messages = stream()
    changelog, committed = MemoryChangelog(), {}
    a = Replica(changelog, committed, {0, 1, 2})
    a.step(a.todo(messages)[:200])
    released = a.rebalance({0, 1})
    assert {s for _, s in released} == {s for n, s in enumerate(SERIES) if n % PARTITIONS == 2}
    assert all(a.engine.detectors[0].snapshot(s) is None for _, s in released)
    b = Replica(changelog, committed, {2})
    assert b.engine.series_tracked() == len(released)
    a.step(a.todo(messages))
    b.step(b.todo(messages))
    expected, _ = uninterrupted(messages)
    assert alert_keys(a.published + b.published) == expected


def test_kept_partitions_keep_their_state_in_memory_and_a_partition_lost_and_regained_is_restored():
    messages = stream()
    changelog, committed = MemoryChangelog(), {}
    a = Replica(changelog, committed, {0, 1, 2}, every=1000)  # no checkpoint: state only in memory
    a.step(a.todo(messages)[:200])
    a.checkpoints.on_revoked({0, 1, 2})  # eager: announces the rebalance, takes nothing yet
    assert a.rebalance({0, 1, 2}) == []
    assert a.checkpoints.counts["restored"] == 0 and a.engine.series_tracked() == len(SERIES)
    a.checkpoints.on_assigned({0, 1})  # within one poll: partition 2 went away, then came back
    assert {s for _, s in a.rebalance({0, 1, 2})} == {s for n, s in enumerate(SERIES) if n % PARTITIONS == 2}
    a.step(a.todo(messages))  # partition 2 replays from its committed offset onto its restored state
    expected, _ = uninterrupted(messages)
    assert alert_keys(a.published) == expected


def test_a_lost_membership_forgets_the_partitions():
    changelog, committed = MemoryChangelog(), {}
    a = Replica(changelog, committed, {0, 1, 2})
    a.step(a.todo(stream(20)))
    a.checkpoints.on_lost({1})
    assert {s for _, s in a.checkpoints.sync()} == {s for n, s in enumerate(SERIES) if n % PARTITIONS == 1}


def test_replayed_points_already_in_a_restored_state_are_skipped_and_counted():
    messages = stream(40)
    changelog, committed = MemoryChangelog(), {}
    first = Replica(changelog, committed, {0, 1, 2})
    first.step(first.todo(messages)[:60], crash="before_commit")  # state written, offsets not committed
    second = Replica(changelog, committed, {0, 1, 2})
    second.step(second.todo(messages)[:60])
    assert second.checkpoints.counts["replayed"] == 60
    assert second.scored == set()


@pytest.mark.parametrize("pages", [1, PAGES])
def test_evicted_series_leave_their_page_and_are_not_restored(pages):
    d = Detector(settings(window=8, stride=2, max_series=2), FakeScorer(window=8))
    changelog = MemoryChangelog()
    checkpoints = Checkpoints(Engine([d]), changelog, pages=pages)
    for offset, series in enumerate(["a", "b", "c"]):
        message = Message(b"", None, "metrics", 0, offset)
        routed = checkpoints.admit(message, checkpoints.engine.routed([pt(series, offset, 0.1)]))
        checkpoints.processed(checkpoints.engine.finish(checkpoints.engine.start(routed)).evicted)
        checkpoints.write()
        changelog.flush()
    # one page for all three: rewritten without "a"; a page each: "a"'s page emptied
    assert checkpoints.counts["tombstones"] == (0 if pages == 1 else 1)
    fresh = Checkpoints(Engine([Detector(settings(window=8, stride=2), FakeScorer(window=8))]), changelog, pages=pages)
    fresh.on_assigned({0})
    fresh.sync()
    assert fresh.engine.series_tracked() == 2
    assert fresh.engine.detectors[0].snapshot("a") is None


def entity_engine() -> Engine:
    s = dataclasses.replace(settings(window=8), features=("cpu", "mem"), entity_label="host")
    return Engine([Detector(s, FakeScorer(window=8, features=("cpu", "mem")))])


def entity_stream(steps: int = 120) -> list[Message]:
    """host-N/cpu and host-N/mem (label host), each host on its own partition, host-1's cpu spiking."""
    offsets, messages = [0, 0], []
    for i in range(steps):
        for h in range(2):
            for feature in ("cpu", "mem"):
                value = 4.0 if (h, feature) == (1, "cpu") and 70 <= i < 76 else normal(i + h)
                point = Point(f"host-{h}/{feature}", T0 + 60.0 * i, {"value": value}, {"host": f"host-{h}"})
                messages.append(Message(encode_point(point), None, "metrics", h, offsets[h]))
                offsets[h] += 1
    return messages


def test_entity_detectors_are_checkpointed_and_restored_with_their_waiting_rows():
    messages = entity_stream()
    whole = entity_engine().process([p for m in messages for p in points_of(m)])
    # Cut after a cpu point whose mem has not arrived: the checkpoint must carry that waiting row.
    cut = next(i for i in range(161, len(messages)) if b"cpu" in messages[i - 1].value)
    changelog = MemoryChangelog()
    before = entity_engine()
    first = Checkpoints(before, changelog, interval_s=0.0)
    first.on_assigned({0, 1})
    first.sync()
    outcome_a = admitted(first, messages[:cut])
    first.processed(outcome_a.evicted)
    assert first.write() > 0
    changelog.flush()

    after = entity_engine()
    second = Checkpoints(after, changelog, interval_s=0.0)
    second.on_assigned({0, 1})
    second.sync()
    assert second.counts["restored"] == 2, "both entities come back"
    outcome_b = admitted(second, messages)  # replays from 0
    assert second.counts["replayed"] == cut
    windows_a = {(v.series, v.ts) for v in outcome_a.verdicts}
    windows_b = [(v.series, v.ts) for v in outcome_b.verdicts]
    assert windows_a.isdisjoint(windows_b) and len(set(windows_b)) == len(windows_b), "no window scored twice"
    assert windows_a | set(windows_b) == {(v.series, v.ts) for v in whole.verdicts}
    assert not any(v.warming_up for v in outcome_b.verdicts), "restored entities need no new warm-up"
    assert alert_keys(outcome_a.alerts + outcome_b.alerts) == alert_keys(whole.alerts)
    assert alert_keys(whole.alerts), "the stream has an anomaly"


# A page written takes its page-mates along, not more often. A checkpoint writes at least one page, so
# with three pages (one a partition) `max_replay` 3 is the shortest round they can keep.
@pytest.mark.parametrize(("pages", "max_replay"), [(PAGES, 6), (1, 3)])
def test_each_series_is_written_once_per_max_replay_and_commits_stop_where_a_written_state_ends(pages, max_replay):
    messages = stream(60)  # 6 series, 2 per partition, one point each per round
    changelog, committed = MemoryChangelog(), {}
    a = Replica(changelog, committed, {0, 1, 2}, max_replay=max_replay, pages=pages)
    for i in range(0, len(messages), len(SERIES)):
        a.step(messages[i : i + len(SERIES)])  # one round per step, a checkpoint after each
    rounds = len(messages) // len(SERIES)
    assert a.checkpoints.counts["written"] <= len(SERIES) * (rounds // max_replay + 1), "once a round, not a point"
    limits = a.checkpoints.replay_from()
    assert limits and all(committed[p] == limits[p] < a.position[p] for p in limits)
    b = Replica(changelog, committed, {0, 1, 2}, pages=pages)  # a restart re-reads from there onto the states
    b.step(b.todo(messages))
    # a page a series: a partition's two series were written at different steps, so one of them skips what
    # its written state holds; one page a partition writes them in step, with nothing to skip
    assert (b.checkpoints.counts["replayed"] > 0) == (pages == PAGES)
    assert {s for s, _ in b.scored} <= set(SERIES) and b.engine.detectors[0].warming_up() == 0
    for series in SERIES:
        np.testing.assert_array_equal(
            a.engine.detectors[0].snapshot(series)["threshold"]["sums"],
            b.engine.detectors[0].snapshot(series)["threshold"]["sums"],
        )


def test_each_partition_is_committed_up_to_its_first_record_that_no_written_state_holds():
    messages = stream(40)
    changelog, committed = MemoryChangelog(), {}
    a = Replica(changelog, committed, {0, 1, 2}, max_replay=5)
    for i in range(0, len(messages), 4):  # polls that cut across the rounds of the series
        a.step(messages[i : i + 4])
    records = [(key, value) for log in changelog.log.values() for key, value in log if value]
    written = {r.series: r.offset for key, value in records for r in decode_page(key, value)}
    assert written, "some states were written"
    expected: dict[int, int] = {}
    for m in messages:  # in offset order within each partition
        if m.offset >= written.get(m.key.decode(), 0):
            expected.setdefault(m.partition, m.offset)
    assert set(expected) == {0, 1, 2}
    assert a.checkpoints.replay_from() == expected


def test_a_clean_stop_writes_every_changed_series():
    changelog, committed = MemoryChangelog(), {}
    a = Replica(changelog, committed, {0, 1, 2}, max_replay=1000)
    a.step(a.todo(stream(10)))
    assert a.checkpoints.counts["written"] < len(SERIES) and a.checkpoints.replay_from() != {}
    a.checkpoints.write(everything=True)
    assert a.checkpoints.counts["written"] == len(SERIES)
    assert a.checkpoints.replay_from() == {}


def states(replica: Replica) -> dict[str, dict]:
    return {series: replica.engine.detectors[0].snapshot(series) for series in SERIES}


def assert_same_states(a: dict[str, dict], b: dict[str, dict]) -> None:
    for series in SERIES:
        np.testing.assert_array_equal(a[series]["window"]["data"], b[series]["window"]["data"])
        np.testing.assert_array_equal(a[series]["threshold"]["sums"], b[series]["threshold"]["sums"])
        assert a[series]["alert"] == b[series]["alert"]


def first_schema(changelog: MemoryChangelog) -> MemoryChangelog:
    """The changelog as the first schema wrote it: a record per series, keyed by the series."""
    older = MemoryChangelog()
    for partition, records in changelog.log.items():
        for _, value in records:
            doc = json.loads(value)  # the arrays stay base64, as both schemas write them
            for series, entry in doc["series"].items():
                record = {"schema": "monitor.state/v1", "partition": partition, **entry}
                older.log[partition].append((series.encode(), json.dumps(record).encode()))
    return older


def test_a_changelog_of_the_first_schema_is_restored_then_rewritten_in_pages_and_its_keys_tombstoned():
    messages = stream()
    changelog, committed = MemoryChangelog(), {}
    first = Replica(changelog, committed, set(range(PARTITIONS)), pages=1)
    first.step(first.todo(messages)[:300])
    older = first_schema(changelog)
    assert sum(map(len, older.log.values())) == len(SERIES)

    second = Replica(older, dict(committed), set(range(PARTITIONS)), pages=1)
    assert second.checkpoints.counts["restored"] == len(SERIES) and second.engine.detectors[0].warming_up() == 0
    assert_same_states(states(first), states(second))
    second.checkpoints.write()
    older.flush()
    for records in older.log.values():  # two series a partition: their records, the page, then tombstones
        (page, value), tombstones = records[2], records[3:]
        assert page == b"\x00page/0" and value is not None, "the page first"
        assert [key for key, value in tombstones if value is None] == [key for key, _ in records[:2]]
    third = Replica(older, dict(committed), set(range(PARTITIONS)), pages=1)
    assert third.checkpoints.counts["restored"] == len(SERIES)
    assert third.checkpoints.counts["incompatible"] == 0
    assert_same_states(states(first), states(third))


def test_a_new_page_count_moves_every_state_to_its_page_and_clears_the_old_keys():
    messages = stream()
    changelog, committed = MemoryChangelog(), {}
    first = Replica(changelog, committed, set(range(PARTITIONS)), pages=PAGES)
    first.step(first.todo(messages)[:300])
    fewer = Replica(changelog, dict(committed), set(range(PARTITIONS)), pages=1)
    fewer.checkpoints.write()
    changelog.flush()
    latest = {(p, key): value for p, records in changelog.log.items() for key, value in records}
    assert {key for (_, key), value in latest.items() if value is not None} == {b"\x00page/0"}
    again = Replica(changelog, dict(committed), set(range(PARTITIONS)), pages=PAGES)
    assert again.checkpoints.counts["restored"] == len(SERIES)
    assert_same_states(states(first), states(again))


def test_a_page_nearing_the_record_size_limit_is_said_once(monkeypatch, caplog):
    import monitor.service.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "LARGE_PAGE_BYTES", 2_000)  # two series' states (2.8 KB), not one (1.4)
    a = Replica(MemoryChangelog(), {}, {0, 1, 2}, pages=1)
    with caplog.at_level("WARNING", logger="monitor.service.checkpoint"):
        for _ in range(3):
            a.step(a.todo(stream())[:60])
    large = [r.getMessage() for r in caplog.records if r.getMessage().startswith("checkpoint_page_large")]
    assert len(large) == 1 and "series=2" in large[0] and "pages=1" in large[0]


def test_a_series_restored_from_another_partition_than_it_came_from_leaves_nothing_queued_in_the_first():
    def points(partition: int, n: int) -> list[Message]:
        return [Message(encode_point(pt("a", i, normal(i))), None, "metrics", partition, i, b"a") for i in range(n)]

    changelog = MemoryChangelog()
    elsewhere = Checkpoints(engine(), changelog, interval_s=0.0)
    elsewhere.on_assigned({1})
    elsewhere.sync()
    elsewhere.processed(admitted(elsewhere, points(1, 20)).evicted)
    elsewhere.write(everything=True)
    changelog.flush()

    here = Checkpoints(engine(), changelog, interval_s=0.0)
    here.on_assigned({0})
    here.sync()
    here.processed(admitted(here, points(0, 10)).evicted)  # "a" comes from partition 0 here, not written yet
    here.on_assigned({0, 1})
    here.sync()  # partition 1's changelog brings "a" back with its state there
    assert here.counts["restored"] == 1
    assert_queued_are_marked(here)
    here.write(everything=True)
    changelog.flush()
    assert here.replay_from() == {}, "nothing of partition 0 waits for a write that never comes"
