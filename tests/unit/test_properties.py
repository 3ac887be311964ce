"""Property-based tests (hypothesis): random bytes and random point sequences never break the loop, and
every message and point is accounted for exactly once."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.engine.detector import Detector, Engine
from monitor.engine.windows import PointRules, WindowStore
from monitor.formats.native import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_BYTES,
    REASONS,
    decode_json,
    decode_json_poll,
    decode_with,
    json_points,
)  # fmt: skip
from monitor.formats.options import Limits
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health
from monitor.records import MAX_TS, MIN_TS, Message, Point, Rejected, encode_point
from monitor.service.loop import Service

from .test_checkpoint_codec import roundtrip
from .test_detector import FakeScorer
from .test_detector import settings as detector_settings

T0 = 1_767_225_600.0
FEATURES = ("cpu", "mem")
SHAPE_REASONS = ("missing_feature",)
"""Rejected after decoding, by the engine: the point lacks a feature of its detector."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
point_like = st.fixed_dictionaries(
    {},
    optional={
        "series": st.sampled_from(["a", "b", "", 7]) | st.text(max_size=4),
        "ts": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=25),
        "value": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=3),
        "values": st.dictionaries(st.sampled_from([*FEATURES, "x"]), st.floats() | st.text(max_size=2), max_size=3),
        "labels": st.dictionaries(st.text(max_size=3), st.text(max_size=3) | st.integers(), max_size=2),
    },
)


def _with_clocks(steps: list[tuple[str, float, dict[str, float]]]) -> list[tuple[str, float, dict[str, float]]]:
    """Turn (series, clock advance, values) into (series, time, values)."""
    clocks: Counter[str] = Counter()
    timed = []
    for series, advance, values in steps:
        clocks[series] += advance
        timed.append((series, clocks[series], values))
    return timed


def check_decoded(result: list[Point] | Rejected) -> None:
    if isinstance(result, Rejected):
        assert result.reason in REASONS, result
        return
    assert result, "an accepted message has at least one point"
    for p in result:
        assert isinstance(p.series, str) and p.series.strip()
        assert MIN_TS <= p.ts <= MAX_TS
        assert p.values and all(math.isfinite(v) for v in p.values.values())


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_random_bytes_decode_to_points_or_a_known_reason(raw):
    check_decoded(decode_json(raw, T0, max_bytes=200))


@given(json_values | point_like | st.lists(point_like, max_size=3))
@settings(max_examples=200)
def test_random_json_decodes_to_valid_points_or_a_known_reason(doc):
    """`json.dumps` writes NaN, Infinity and integers beyond 64 bits, as careless producers do."""
    check_decoded(decode_json(json.dumps(doc).encode(), None))


# Messages at or near the common shape (one point, one feature), which `decode_json` decodes by a path of its own.
near_common = st.fixed_dictionaries(
    {
        "series": st.text(max_size=6) | st.sampled_from(["web-1/cpu", " ", "", " a", "a\t", "\u00e9"]),
        "ts": st.floats(MIN_TS - 10, MAX_TS + 10) | st.integers(int(MIN_TS) - 10, int(MAX_TS) + 10) | st.booleans(),
        "value": st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70) | st.booleans(),
    },
    optional={
        "labels": st.none() | st.dictionaries(st.text(max_size=3), st.text(max_size=3) | st.integers(), max_size=3),
        "values": json_values,
        "extra": json_values,
    },
)


@given(near_common | point_like, st.booleans())
@settings(max_examples=300)
def test_the_common_message_decodes_as_the_shared_checks_do(doc, spaced):
    """Whichever path `decode_json` takes (msgspec into a struct, or orjson and the field checks), its
    answer is the one `decode_with` gives: the same points, or the same reason and detail."""
    raw = json.dumps(doc, indent=1 if spaced else None).encode()
    assert decode_json(raw, T0) == decode_with(json_points, raw, T0, DEFAULT_MAX_BYTES, DEFAULT_LIMITS)


SMALL_LIMITS = Limits(max_series_id_length=4, max_labels=2, max_label_name_length=2, max_label_value_length=2)
common = st.fixed_dictionaries(
    {
        "series": st.sampled_from(["web-1/cpu", "a", " a"]),
        "ts": st.floats(MIN_TS, MAX_TS),
        "value": st.floats(-1e9, 1e9),
    },
    optional={
        "labels": st.none() | st.dictionaries(st.sampled_from(["dc", "h", "env"]), st.text(max_size=3), max_size=3)
    },
)


@given(st.lists(common, max_size=4), near_common | point_like, st.integers(0, 4), st.booleans())
@settings(max_examples=400)
def test_a_poll_decoded_whole_gives_the_points_each_message_gives(docs, odd, at, small):
    """`decode_json_poll` takes a poll only when each message is one point that `decode_json` accepts, and
    then gives exactly those points; anything else (another shape, a fault) is left to `decode_json`,
    message by message. Here a poll of common messages holds one that may not be."""
    docs.insert(at, odd)
    raws: list[bytes | None] = [json.dumps(doc).encode() for doc in docs]
    limits = SMALL_LIMITS if small else DEFAULT_LIMITS
    whole = decode_json_poll(raws, limits=limits)
    one_by_one = [decode_json(raw, T0, limits=limits) for raw in raws]
    if whole is not None:
        assert all(isinstance(points, list) and len(points) == 1 for points in one_by_one)
        assert whole.points() == [points[0] for points in one_by_one]  # type: ignore[index]


GOOD = b'{"series": "a", "ts": 1, "value": 1, "labels": {"dc": "x"}}'


@pytest.mark.parametrize(
    "odd",
    [
        b'{"series": "a", "ts": 1, "value": 1, "labels": {"env": "x"}}',  # label name over 2
        b'{"series": "a", "ts": 1, "value": 1, "labels": {"dc": "xyz"}}',  # label value over 2
        b'{"series": "a", "ts": 1, "value": 1, "labels": {"a": "1", "b": "2", "c": "3"}}',  # over 2 labels
        b'{"series": "abcde", "ts": 1, "value": 1}',  # series id over 4
        b'{"series": " ", "ts": 1, "value": 1}',
        b'{"series": "a", "ts": -1, "value": 1}',
        b'{"series": "a", "ts": 4102444801, "value": 1}',
        b'{"series": "a", "ts": 1, "value": 1e999}',
        b'{"series": "a", "ts": 1, "value": 1, "values": {"value": 1}}',
        b'{"series": "a", "ts": "1970-01-01T00:00:01Z", "value": 1}',
        b'[{"series": "a", "ts": 1, "value": 1}]',
        b"{not json",
        b"x" * 100,
        None,
    ],
)
def test_a_poll_with_one_message_not_of_the_common_shape_is_decoded_message_by_message(odd):
    limits = Limits(max_series_id_length=4, max_labels=2, max_label_name_length=2, max_label_value_length=2)
    whole = decode_json_poll([GOOD, GOOD], max_bytes=80, limits=limits)
    assert whole is not None and len(whole) == 2
    assert decode_json_poll([GOOD, odd, GOOD], max_bytes=80, limits=limits) is None


@given(st.lists(common, min_size=1, max_size=6), st.booleans())
@settings(max_examples=200)
def test_a_poll_of_common_messages_is_decoded_whole_unless_beyond_a_limit(docs, small):
    raws: list[bytes | None] = [json.dumps(doc).encode() for doc in docs]
    limits = SMALL_LIMITS if small else DEFAULT_LIMITS
    whole = decode_json_poll(raws, limits=limits)
    one_by_one = [decode_json(raw, limits=limits) for raw in raws]
    assert (whole is not None) == all(isinstance(points, list) for points in one_by_one)
    if whole is not None:
        assert whole.points() == [points[0] for points in one_by_one]  # type: ignore[index]
        assert decode_json_poll(raws, max_bytes=max(map(len, raws)) - 1, limits=limits) is None  # type: ignore[arg-type]
        assert decode_json_poll([*raws, None], limits=limits) is None  # a tombstone


# Points of three series whose clocks mostly advance by one step, with repeats, reorderings, gaps and
# points missing a feature mixed in.
point_values = st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.integers(0, 19)).map(
    lambda v: {"cpu": v[0]} if v[2] == 0 else {"cpu": v[0], "mem": v[1]}
)
point_steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([1.0, 1.0, 1.0, 1.0, 0.0, -1.0, -3.0, 2.0, 4.0, 0.4]),
        point_values,
    ),
    min_size=10,
    max_size=150,
).map(_with_clocks)
rules = st.builds(
    PointRules,
    step=st.sampled_from([0.0, 1.0, 2.5]),
    fill_gaps=st.integers(0, 3),
    reset_after_gap=st.booleans(),
    allowed_lateness=st.sampled_from([0.0, 1.0, 5.0]),
    duplicates=st.sampled_from(["first", "last"]),
)


@given(point_steps, rules, st.integers(1, 3))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_every_point_is_taken_dropped_or_merged_and_windows_stay_in_order(steps, point_rules, max_series):
    last_end: dict[str, float] = {}
    store = WindowStore(4, 2, FEATURES, max_series, lambda evicted: last_end.pop(evicted, None), point_rules)
    for series, t, values in steps:
        for w in store.push(Point(series, T0 + t, values)):
            assert w.data.shape == (4, len(FEATURES)) and np.isfinite(w.data).all()
            assert np.all(np.diff([w.start_ts, w.end_ts]) > 0)
            assert w.end_ts > last_end.get(w.series, -math.inf), "a series' windows move forward in time"
            last_end[w.series] = w.end_ts
    taken_or_not = store.accepted + store.adjusted["duplicate_replaced"]
    taken_or_not += sum(n for reason, n in store.dropped.items() if reason != "evicted_series")
    assert taken_or_not == len(steps)
    assert len(store) <= max_series


@given(point_steps, rules, st.floats(0, 1))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_a_restored_buffer_continues_exactly_like_the_original(steps, point_rules, share):
    split = round(share * len(steps))

    def new() -> WindowStore:
        return WindowStore(4, 2, FEATURES, 10, None, point_rules)

    original, copy = new(), new()
    for series, t, values in steps[:split]:
        original.push(Point(series, T0 + t, values))
    for series in ("a", "b", "c"):
        state = original.snapshot(series)
        if state is not None:
            copy.restore(series, roundtrip(state).state)
    for series, t, values in steps[split:]:
        a, b = original.push(Point(series, T0 + t, values)), copy.push(Point(series, T0 + t, values))
        assert [(w.series, w.end_ts) for w in a] == [(w.series, w.end_ts) for w in b]
        for wa, wb in zip(a, b, strict=True):
            np.testing.assert_array_equal(wa.data, wb.data)


class ListSource:
    def __init__(self, batches: list[list[Message]]) -> None:
        self.batches = batches

    def poll(self) -> list[Message] | None:
        return self.batches.pop(0) if self.batches else None

    def assigned(self) -> bool:
        return True

    def commit(self, limits=None) -> None:
        pass

    def lag(self) -> dict[tuple[str, int], int]:
        return {}

    def close(self) -> None:
        pass


class ListSink:
    def __init__(self) -> None:
        self.alerts: list = []
        self.dead: list[tuple[Message, Rejected]] = []

    def publish(self, alert) -> None:
        self.alerts.append(alert)

    def dead_letter(self, message: Message, rejected: Rejected) -> None:
        self.dead.append((message, rejected))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


good_message = st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 80), st.floats(-10, 10)).map(
    lambda s: encode_point(Point(s[0], T0 + 60 * s[1], {"cpu": s[2], "mem": s[2] / 2}))
)
partial_message = st.sampled_from([b'{"series": "a", "ts": 1767225600, "values": {"cpu": 1}}'])
messages = st.lists(st.one_of(good_message, partial_message, st.binary(max_size=40)), max_size=80)


@given(messages, st.integers(1, 10))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_run_loop_survives_any_input_and_accounts_for_every_message(raws, batch_size):
    batch = [Message(raw, T0, "metrics", 0, offset) for offset, raw in enumerate(raws)]
    batches = [batch[i : i + batch_size] for i in range(0, len(batch), batch_size)]
    engine = Engine([Detector(detector_settings(features=FEATURES), FakeScorer(features=FEATURES))])
    sink = ListSink()
    service = Service(engine, ListSource(batches), sink, Exporter(), Health())
    summary = service.run()
    assert summary.messages == len(raws)
    assert sum(summary.rejected.values()) == len(sink.dead)
    assert set(summary.rejected) <= set(REASONS) | set(SHAPE_REASONS)
    ok = service.exporter.registry.get_sample_value("monitor_messages_total", {"topic": "metrics", "outcome": "ok"})
    assert (ok or 0) == summary.messages - len(sink.dead)
    assert Counter(r.reason for _, r in sink.dead) == summary.rejected
    assert [m.value for m, _ in sink.dead] == [m.value for m in batch if id(m) in {id(d) for d, _ in sink.dead}]
