"""monitor.engine.windows.WindowStore: when windows are emitted, what they hold, what is dropped and evicted."""

from __future__ import annotations

from collections import Counter, OrderedDict
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from monitor.engine import windows
from monitor.engine.windows import WindowStore
from monitor.records import Point, Window, WindowBatch

T0 = 1795723200.0


def pt(ts: float, value: float | dict[str, float] = 0.0, series: str = "a", labels: dict | None = None) -> Point:
    values = value if isinstance(value, dict) else {"value": float(value)}
    return Point(series=series, ts=T0 + ts, values=values, labels=labels or {})


def store(window: int = 4, stride: int = 2, features=("value",), max_series: int = 100, on_evict=None) -> WindowStore:
    return WindowStore(window, stride, features, max_series, on_evict)


def feed(s: WindowStore, n: int, start: int = 0, series: str = "a") -> list[Window | None]:
    return [s.add(pt(i, float(i), series)) for i in range(start, start + n)]


@pytest.mark.parametrize(("window", "stride"), [(4, 1), (4, 2), (4, 3), (4, 4), (8, 5), (5, 7)])
def test_first_window_when_full_then_every_stride(window, stride):
    results = feed(store(window, stride), 40)
    emitted = [i for i, w in enumerate(results) if w is not None]
    assert emitted[0] == window - 1
    assert emitted == list(range(window - 1, 40, stride))


def test_window_is_the_last_rows_in_time_order():
    s = store(window=4, stride=1)
    history: list[float] = []
    for i in range(30):  # wraps the ring buffer several times
        history.append(float(i))
        w = s.add(pt(i, float(i) * 10))
        if i < 3:
            assert w is None
            continue
        assert w is not None
        assert w.data.shape == (4, 1)
        np.testing.assert_array_equal(w.data[:, 0], np.array(history[-4:]) * 10)
        assert w.start_ts == T0 + i - 3
        assert w.end_ts == T0 + i
        assert w.series == "a"


def test_window_timestamps_follow_uneven_steps():
    s = store(window=3, stride=1)
    stamps = [0.0, 1.5, 7.0, 7.25, 100.0]
    windows = [s.add(pt(t, t)) for t in stamps]
    assert windows[:2] == [None, None]
    assert [(w.start_ts - T0, w.end_ts - T0) for w in windows[2:]] == [(0.0, 7.0), (1.5, 7.25), (7.0, 100.0)]
    np.testing.assert_array_equal(windows[-1].data[:, 0], [7.0, 7.25, 100.0])


def test_window_carries_labels_of_the_series():
    s = store(window=2, stride=1)
    s.add(pt(0, labels={"host": "web-01"}))
    w = s.add(pt(1, labels={"host": "web-01"}))
    assert dict(w.labels) == {"host": "web-01"}


def test_series_have_independent_buffers():
    s = store(window=3, stride=1)
    for i in range(2):
        assert s.add(pt(i, 1.0, "a")) is None
        assert s.add(pt(i, 2.0, "b")) is None
    wa, wb = s.add(pt(2, 1.0, "a")), s.add(pt(2, 2.0, "b"))
    assert wa.series == "a" and wb.series == "b"
    assert np.all(wa.data == 1.0) and np.all(wb.data == 2.0)
    assert len(s) == 2


def test_late_and_duplicate_points_are_dropped_and_counted():
    s = store(window=3, stride=1)
    feed(s, 3)  # ts 0, 1, 2
    assert s.add(pt(2, 999.0)) is None  # duplicate
    assert s.add(pt(1, 999.0)) is None  # late
    assert s.add(pt(-10, 999.0)) is None  # late
    assert s.dropped == {"duplicate": 1, "late": 2}
    w = s.add(pt(3, 3.0))
    np.testing.assert_array_equal(w.data[:, 0], [1.0, 2.0, 3.0])  # nothing of the dropped points got in


def test_late_points_do_not_count_towards_the_stride():
    s = store(window=2, stride=2)
    feed(s, 2)  # emits at ts 1
    assert s.add(pt(0, 0.0)) is None
    assert s.add(pt(2, 2.0)) is None
    assert s.add(pt(3, 3.0)) is not None


def test_point_missing_a_feature_is_counted_and_not_buffered():
    s = store(window=2, stride=1, features=("cpu", "mem"))
    assert s.add(pt(0, {"cpu": 1.0})) is None
    assert s.dropped == {"missing_feature": 1}
    assert len(s) == 0
    assert s.add(pt(1, {"cpu": 1.0, "mem": 2.0})) is None
    assert s.add(pt(2, {"mem": 2.0})) is None
    assert s.dropped["missing_feature"] == 2
    w = s.add(pt(3, {"cpu": 3.0, "mem": 4.0}))
    np.testing.assert_array_equal(w.data, [[1.0, 2.0], [3.0, 4.0]])


def test_multivariate_columns_follow_the_feature_list():
    s = store(window=2, stride=1, features=("mem", "rps", "cpu"))
    s.add(pt(0, {"cpu": 1.0, "mem": 2.0, "rps": 3.0, "extra": 9.0}))
    w = s.add(pt(1, {"rps": 30.0, "cpu": 10.0, "mem": 20.0}))
    assert w.data.shape == (2, 3)
    np.testing.assert_array_equal(w.data, [[2.0, 3.0, 1.0], [20.0, 30.0, 10.0]])


def test_least_recently_updated_series_is_evicted():
    evicted: list[str] = []
    s = store(window=2, stride=1, max_series=2, on_evict=evicted.append)
    s.add(pt(0, series="a"))
    s.add(pt(0, series="b"))
    s.add(pt(1, series="a"))  # a is now the most recently updated
    s.add(pt(0, series="c"))
    assert evicted == ["b"]
    assert s.dropped["evicted_series"] == 1
    assert len(s) == 2
    s.add(pt(0, series="d"))
    assert evicted == ["b", "a"]
    assert s.dropped["evicted_series"] == 2


polls = st.lists(st.tuples(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=4), st.booleans()), max_size=40)


@given(polls, st.integers(1, 5), st.integers(1, 3))
@example([(["a", "b"], False), (["a", "b", "a"], True), (["c"], False)], 2, 1)  # b is older than a
@settings(max_examples=200, deadline=None)
def test_the_least_recently_updated_series_is_evicted_whichever_way_its_points_came(stream, max_series, candidates):
    """Polls taken point by point or in columns (when all their series are tracked), against the order an
    `OrderedDict` keeps when each point moves its series to the end; few eviction candidates at a time,
    so that they are used up and go stale (updated after they were found)."""
    evicted: list[str] = []
    s = store(window=2, stride=1, max_series=max_series, on_evict=evicted.append)
    order: OrderedDict[str, None] = OrderedDict()
    expected: list[str] = []
    clock: Counter[str] = Counter()
    for names, in_columns in stream:
        for name in names:
            if name in order:
                order.move_to_end(name)
            elif len(order) >= max_series:
                expected.append(order.popitem(last=False)[0])
            order[name] = None
        ts = []
        for name in names:
            clock[name] += 1
            ts.append(T0 + clock[name])
        slots = s.slots_of(names)
        with patch.object(windows, "EVICTION_CANDIDATES", candidates):
            if in_columns and slots is not None:
                s.collect_columns(names, slots, np.array(ts), np.ones((len(names), 1)), WindowBatch(2, 1))
            else:
                points = [pt(t - T0, series=name) for name, t in zip(names, ts, strict=True)]
                s.collect_many(points, WindowBatch(2, 1))
    assert evicted == expected
    assert sorted(s._slots) == sorted(order)


def test_eviction_without_callback_still_counts():
    s = store(window=2, stride=1, max_series=1)
    s.add(pt(0, series="a"))
    s.add(pt(0, series="b"))
    assert s.dropped == {"evicted_series": 1}
    assert len(s) == 1


def test_evicted_series_starts_over():
    s = store(window=3, stride=1, max_series=1)
    feed(s, 3, series="a")
    s.add(pt(0, series="b"))
    # "a" comes back with a fresh buffer: it needs a full window again, and older ts are no longer "late".
    assert s.add(pt(0, series="a")) is None
    assert s.add(pt(1, series="a")) is None
    assert s.add(pt(2, series="a")) is not None
    assert "late" not in s.dropped and "duplicate" not in s.dropped


def test_returned_window_is_a_copy():
    s = store(window=3, stride=1)
    feed(s, 2)
    w = s.add(pt(2, 2.0))
    before = w.data.copy()
    feed(s, 10, start=3)  # overwrites every slot of the ring buffer
    np.testing.assert_array_equal(w.data, before)
    w.data[:] = -1.0  # and writing to it does not reach the buffer
    nxt = s.add(pt(13, 13.0))
    np.testing.assert_array_equal(nxt.data[:, 0], [11.0, 12.0, 13.0])
