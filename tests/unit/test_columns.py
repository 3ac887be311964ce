"""monitor.engine.columns: a poll taken in as columns gives exactly what the point-by-point path gives.

The same random streams (duplicates, late points, new series, evictions, bad and multi-point messages,
a second detector, a restart that replays what the changelog already holds) go through the service
three times: as the daemon runs it (a poll of common messages decoded whole, `decode_json_poll`), with
every message decoded by itself, and with `Engine.columns` refusing every poll, which leaves the
point-by-point path. Alerts, dead letters, changelog records, commits and every count must be equal, and
the columnar path must have taken most polls."""

from __future__ import annotations

import random

import orjson
import pytest

from monitor.engine.detector import Detector, Engine
from monitor.formats.native import decode_json, decode_json_poll
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health
from monitor.records import Message, Point, PointColumns, encode_point
from monitor.service.checkpoint import Checkpoints
from monitor.service.loop import Service

from .test_checkpoint import MemoryChangelog, assert_queued_are_marked
from .test_detector import FakeScorer, normal, pt, settings
from .test_properties import ListSink, ListSource

PARTITIONS = 3


def stream(seed: int, steps: int = 90) -> list[Message]:
    """Single-point messages of web and db series over three partitions, with spikes and the faults the
    point-by-point path exists for: duplicates, late points, series that start late, bad messages,
    multi-point messages and points without the detector's feature."""
    rng = random.Random(seed)
    names = [f"web-{i}/cpu" for i in range(6)] + [f"db-{i}/cpu" for i in range(2)]
    offsets = [0] * PARTITIONS
    out: list[Message] = []

    def send(n: int, raw: bytes) -> None:
        partition = n % PARTITIONS
        out.append(Message(raw, None, "metrics", partition, offsets[partition], names[n].encode()))
        offsets[partition] += 1

    for i in range(steps):
        for n, name in enumerate(names):
            if n >= 6 and i < 30:
                continue  # the db series start later
            value = 3.0 + rng.random() if rng.random() < 0.02 else normal(i + n)
            send(n, encode_point(pt(name, i, value)))
            roll = rng.random()
            if roll < 0.01:
                send(n, encode_point(pt(name, i, value + 1)))  # duplicate timestamp
            elif roll < 0.02 and i > 2:
                send(n, encode_point(pt(name, i - 2, value)))  # late
            elif roll < 0.04:
                send(n, b"{not json")  # dead-lettered; the rest of its poll can still be columns
            elif roll < 0.045:
                send(n, orjson.dumps([{"series": name, "ts": pt(name, i, 0).ts + 1, "value": value}] * 2))
            elif roll < 0.05:
                send(n, encode_point(Point(name, pt(name, i, 0).ts + 5, {"other": 1.0})))
    return out


def engine(two_detectors: bool, max_series: int) -> Engine:
    detectors = [Detector(settings("web", "web-*", window=8, stride=2, max_series=max_series), FakeScorer(8))]
    if two_detectors:
        detectors.append(Detector(settings("db", "db-*", window=8, stride=1), FakeScorer(8)))
    return Engine(detectors)


class Seen:
    """A task that notes the points of each poll as tasks get them (scheduled retraining keeps them)."""

    def __init__(self) -> None:
        self.points: list[tuple] = []

    def after_step(self, points, outcome) -> None:
        self.points += [(p.series, p.ts, dict(p.values), dict(p.labels), d and d.settings.name) for p, d in points]


class Committing(ListSource):
    def __init__(self, batches: list[list[Message]]) -> None:
        super().__init__(batches)
        self.commits: list[dict[int, int] | None] = []

    def commit(self, limits=None) -> None:
        self.commits.append(dict(limits) if limits is not None else None)


def run(
    messages: list[Message], seed: int, two_detectors: bool, max_series: int, changelog: MemoryChangelog, whole: bool
):
    """One replica over the messages in random polls, checkpoints on; what it published, wrote and counted.
    `whole`: a poll of common messages is decoded whole (`decode_json_poll`), as the daemon does."""
    rng = random.Random(seed)
    batches, i = [], 0
    while i < len(messages):
        size = rng.randint(1, 40)
        batches.append(messages[i : i + size])
        i += size
    e = engine(two_detectors, max_series)
    clock = [0.0]
    checkpoints = Checkpoints(e, changelog, 1.0, lambda: clock[0], max_replay_s=3.0)
    source, sink, exporter = Committing(batches), ListSink(), Exporter()

    class Ticking(Committing):
        def poll(self):
            clock[0] += 0.5
            assert_queued_are_marked(checkpoints)
            return source.poll()

    ticking = Ticking([])
    ticking.commits = source.commits
    checkpoints.on_assigned(range(PARTITIONS))
    seen = Seen()
    decode_poll = decode_json_poll if whole else None
    service = Service(
        e, ticking, sink, exporter, Health(), decode_poll=decode_poll, tasks=[seen], checkpoints=checkpoints
    )
    summary = service.run()
    changelog.flush()
    ok = {s.labels["topic"]: s.value for m in exporter.registry.collect() if m.name == "monitor_messages"
          for s in m.samples if s.name.endswith("_total") and s.labels.get("outcome") == "ok"}  # fmt: skip
    return {
        "alerts": sink.alerts,
        "dead": [(m.partition, m.offset, r) for m, r in sink.dead],
        "changelog": dict(changelog.log),
        "commits": source.commits,
        "summary": (summary.messages, summary.points, summary.windows_scored, summary.alerts, summary.rejected),
        "dropped": e.dropped(),
        "counts": checkpoints.counts,
        "ok": ok,
        "tasks saw": seen.points,
    }  # fmt: skip


def all_paths(monkeypatch, seed: int, two_detectors: bool, max_series: int) -> tuple[list[dict], int, int]:
    """Each run of the stream (then a restart over all of it from offset 0) as the daemon takes it (polls of
    common messages decoded whole), with each message decoded by itself, and point by point; how many
    polls took the columnar path and how many of those were decoded whole, as the daemon takes them."""
    messages = stream(seed)
    columnar, whole = [0], [0]
    window_columns = Engine.window_columns

    def counted(self, columns):
        columnar[0] += 1
        whole[0] += isinstance(columns.points, PointColumns)
        return window_columns(self, columns)

    results = []
    for mode in ("daemon", "per message", "point by point"):
        with monkeypatch.context() as patch:
            if mode == "daemon":
                patch.setattr(Engine, "window_columns", counted)
            if mode == "point by point":
                patch.setattr(Engine, "columns", lambda self, points: None)
            changelog = MemoryChangelog()
            first = run(messages[: len(messages) // 2], seed, two_detectors, max_series, changelog, mode == "daemon")
            again = run(messages, seed + 1, two_detectors, max_series, changelog, mode == "daemon")  # replays
            results.append({"first": first, "restart": again})
    return results, columnar[0], whole[0]


@pytest.mark.parametrize("max_series", [1000, 5])
@pytest.mark.parametrize("two_detectors", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_a_poll_in_columns_gives_what_point_by_point_gives(monkeypatch, seed, two_detectors, max_series):
    (daemon, per_message, reference), columnar_polls, whole_polls = all_paths(
        monkeypatch, seed, two_detectors, max_series
    )
    assert reference["restart"]["counts"]["replayed"] > 0, "the restart replays records the state holds"
    assert reference["first"]["dead"], "the stream has bad messages"
    for run_ in ("first", "restart"):
        for what, expected in reference[run_].items():
            assert daemon[run_][what] == expected, (run_, what)
            assert per_message[run_][what] == expected, (run_, what)
    if max_series == 1000:  # (5 evicts all the time, so alerts are rare and every poll goes point by point)
        assert [a for a in reference["first"]["alerts"] if a.status == "firing"], "the stream has anomalies"
        assert columnar_polls >= 30, "most polls (those without new series or faults) take the columns"
        assert whole_polls >= 10, "polls of common messages only are decoded whole"


def test_the_checkpoint_leaves_a_poll_it_cannot_take_as_columns_untouched():
    """Records of a partition out of offset order, or a series that moved to another partition: `admit`
    must take those point by point, so `admit_columns` declines before it changes anything."""
    e = engine(False, 1000)
    checkpoints = Checkpoints(e, MemoryChangelog(), 1.0, lambda: 0.0)
    checkpoints.on_assigned(range(PARTITIONS))
    checkpoints.sync()
    names = [f"web-{n}/cpu" for n in range(3)]

    def poll(steps: range, partition_of=lambda n: n, offset_of=lambda i, n: i) -> list[Message]:
        return [Message(encode_point(pt(name, i, normal(i))), None, "metrics", partition_of(n), offset_of(i, n))
                for i in steps for n, name in enumerate(names)]  # fmt: skip

    def take(messages: list[Message]):
        points = [p for m in messages for p in decode_json(m.value)]
        columns = e.columns(points)
        return columns, (None if columns is None else checkpoints.admit_columns(messages, columns))

    for m in poll(range(10)):  # the series' first points make their slots, point by point
        e.finish(e.start(checkpoints.admit(m, e.routed(decode_json(m.value)))))
    before = {name: (o.partition, o.next_offset) for name, o in checkpoints._origins.items()}
    swapped = poll(range(10, 12), offset_of=lambda i, n: 21 - i)
    moved = poll(range(10, 12), partition_of=lambda n: (n + 1) % PARTITIONS)
    for declined in (swapped, moved):
        columns, kept = take(declined)
        assert columns is not None and kept is None
        assert {name: (o.partition, o.next_offset) for name, o in checkpoints._origins.items()} == before
        assert checkpoints.counts["replayed"] == 0
    columns, kept = take(poll(range(10, 12)))
    assert kept is not None and kept.all()
    assert {name: o.next_offset for name, o in checkpoints._origins.items()} == dict.fromkeys(names, 12)
    _, replayed = take(poll(range(11, 13)))
    assert replayed is not None and replayed.tolist() == [False] * 3 + [True] * 3
    assert checkpoints.counts["replayed"] == 3


MIXED = ["web-0/cpu", "db-0/cpu", "other/cpu", "web-1/cpu"]
"""Series of the web detector, of the db detector when there is one, and of no detector."""


@pytest.mark.parametrize(("two_detectors", "names"), [(False, MIXED[::3]), (False, MIXED), (True, MIXED)])
def test_a_poll_in_columns_names_its_series_with_the_window_stores_own_strings(two_detectors, names):
    """Decoding makes a new string per point; the columns carry the one each series' window store keys it
    by instead (the later dict lookups then match on identity), in poll order, and a point no detector
    wants keeps its own."""
    e = engine(two_detectors, 1000)
    e.finish(e.start(e.routed([pt(name, 0, 1.0) for name in names])))
    fresh = [pt("".join(name), 1, 1.0) for name in names]  # equal names, other strings
    assert not any(p.series is name for p, name in zip(fresh, names, strict=True))
    columns = e.columns(fresh)
    assert columns is not None and columns.series == [p.series for p in fresh]
    for point, name in zip(fresh, columns.series, strict=True):
        owner = e.owner(name)
        if owner is None:
            assert name is point.series
        else:
            assert name is owner.windows.names(owner.windows.slots_of([name]))[0]
            assert name is next(key for key in owner.windows._slots if key == name)
