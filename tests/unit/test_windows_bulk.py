"""`WindowStore.collect_many` (a poll at once, the engine's path) against `collect` one point at a time: the
same windows in the same order, the same counts, buffers and evictions, and through the engine the same
verdicts and alerts, on streams with interleaved series, duplicates, late points, gaps and evictions."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.engine.detector import Detector, Engine
from monitor.engine.windows import PointRules, WindowStore
from monitor.records import Point, WindowBatch

from .test_detector import FakeScorer, normal
from .test_detector import settings as detector_settings

T0 = 1_795_723_200.0
RULES = [PointRules(), PointRules(duplicates="last"), PointRules(step=60.0, fill_gaps=2, reset_after_gap=True)]


def one_by_one(store: WindowStore) -> WindowStore:
    """The store taking every poll point by point, as before `collect_many`."""
    store.collect_many = lambda points, batch: [store.collect(p, batch) for p in points]  # type: ignore[method-assign]
    return store


def rows(batch: WindowBatch) -> list[tuple]:
    return [(w.series, w.start_ts, w.end_ts, w.data.tolist(), dict(w.labels)) for w in batch.windows()]


def state(store: WindowStore, names: list[str]) -> tuple:
    snapshots = {n: store.snapshot(n) for n in names}
    shown = {
        n: None if s is None else {**s, "data": s["data"].tolist(), "ts": s["ts"].tolist()}
        for n, s in snapshots.items()
    }
    return shown, dict(store.dropped), dict(store.adjusted), store.accepted, len(store)


# A point: series ("x" lacks the feature), steps of 60 s from its series' previous point (mostly ahead; 0 is a
# duplicate, less is late), value.
points = st.lists(st.tuples(st.sampled_from("abcdx"), st.integers(-2, 3), st.floats(-5, 5)), max_size=200)


@given(points, st.integers(1, 3), st.integers(1, 40), st.integers(2, 5), st.sampled_from(RULES))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_poll_at_once_makes_the_windows_of_one_point_at_a_time(stream, stride, poll, max_series, rules):
    names = ["a", "b", "c", "d", "x"]
    bulk, reference = (WindowStore(4, stride, ("value",), max_series, rules=rules) for _ in range(2))
    one_by_one(reference)
    clock = dict.fromkeys(names, 0)
    made = []
    for s, ahead, v in stream:
        clock[s] += ahead
        made.append(Point(s, T0 + 60.0 * clock[s], {"value": v} if s != "x" else {"other": v}, {"host": s}))
    for i in range(0, len(made), poll):
        ours, theirs = WindowBatch(4, 1), WindowBatch(4, 1)
        bulk.collect_many(made[i : i + poll], ours)
        reference.collect_many(made[i : i + poll], theirs)
        assert rows(ours) == rows(theirs)
        assert state(bulk, names) == state(reference, names)


def stream() -> list[Point]:
    """Six series in turn with spikes, duplicates, late points, a jump ahead and a seventh series now and
    then, which evicts the least recently updated one."""
    out = []
    for i in range(140):
        for s in range(6):
            spike = (s == 1 and 60 <= i < 66) or (s == 4 and 100 <= i < 106)
            value = 9.0 if spike else normal(i) * (1 + s / 10)
            step = i + 30 if s == 3 and i >= 90 else i  # series 3 jumps ahead
            out.append(Point(f"host-{s}/cpu", T0 + 60.0 * step, {"value": value}))
            if (s + i) % 17 == 0:
                out.append(Point(f"host-{s}/cpu", T0 + 60.0 * step, {"value": -value}))  # a duplicate
            if s == 5 and i % 13 == 12:
                out.append(Point(f"host-{s}/cpu", T0 + 60.0 * (i - 3), {"value": value}))  # late
        if i % 25 == 24:
            out.append(Point(f"other-{i}/cpu", T0 + 60.0 * i, {"value": 0.5}))  # evicts the least recent series
    return out


@pytest.mark.parametrize("stride", [1, 3])
def test_the_engine_gives_the_same_verdicts_and_alerts_on_the_bulk_path(stride):
    results = []
    for collect in ("bulk", "one by one"):
        d = Detector(
            replace(detector_settings(stride=stride), max_series=6, points=PointRules(duplicates="last")), FakeScorer()
        )
        if collect == "one by one":
            one_by_one(d.windows)
        engine, made = Engine([d]), stream()
        outcomes = [engine.process(made[i : i + 97]) for i in range(0, len(made), 97)]
        verdicts = [v for o in outcomes for v in o.verdicts]
        alerts = [a for o in outcomes for a in o.alerts]
        results.append(
            (verdicts, alerts, [o.evicted for o in outcomes], dict(engine.dropped()), dict(engine.adjusted()))
        )
    (verdicts, alerts, evicted, dropped, adjusted), reference = results
    assert (verdicts, alerts, evicted, dropped, adjusted) == reference
    assert len(verdicts) > 500 / stride and {a.status for a in alerts} == {"firing", "resolved"}
    assert any(evicted) and dropped["late"] > 0 and adjusted["duplicate_replaced"] > 0
