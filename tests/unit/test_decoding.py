"""monitor.formats.native.decode_json: every rejection reason, the detail it carries, and every accepted form."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from monitor.formats.native import DEFAULT_LIMITS, DEFAULT_MAX_BYTES, REASONS, decode_json, decode_with, json_points
from monitor.records import UNIVARIATE, Point, Rejected

T0 = 1795723200.0  # 2026-11-26T20:00:00Z


def _raw(doc: object) -> bytes:
    return orjson.dumps(doc)


_DROP = object()


def _ok(**changes: object) -> dict:
    """A valid point with some keys replaced, or removed where the value is `_DROP`."""
    base: dict = {"series": "web-01/cpu", "ts": T0, "value": 0.5}
    for key, value in changes.items():
        if value is _DROP:
            base.pop(key)
        else:
            base[key] = value
    return base


# (id, raw message, decode_json kwargs, expected reason, substrings the detail must contain)
CASES = [
    ("oversize", _raw(_ok()), {"max_bytes": 10}, "oversize", ["10"]),
    ("over_limit-series", _raw([_ok(), _ok(series="s" * 5000)]), {}, "over_limit", ["point 1", "5000", "4096"]),
    ("over_limit-labels", _raw(_ok(labels={str(i): "" for i in range(65)})), {}, "over_limit", ["65 labels"]),
    ("invalid_utf8", b'{"series": "\xff\xfe"}', {}, "invalid_utf8", ["UTF-8"]),
    ("invalid_json-truncated", b'{"series": "a", "ts": ', {}, "invalid_json", []),
    ("invalid_json-trailing-comma", b'{"series": "a",}', {}, "invalid_json", []),
    ("not_an_object-number", b"42", {}, "not_an_object", ["42"]),
    ("not_an_object-string", b'"hello"', {}, "not_an_object", ['"hello"']),
    ("not_an_object-in-array", _raw([_ok(), 7]), {}, "not_an_object", ["[1]", "7"]),
    ("empty_batch", b"[]", {}, "empty_batch", []),
    ("missing_field-series", _raw(_ok(series=_DROP)), {}, "missing_field", ["series"]),
    ("missing_field-series-null", _raw(_ok(series=None)), {}, "missing_field", ["series"]),
    ("missing_field-value", _raw(_ok(value=_DROP)), {}, "missing_field", ["value"]),
    ("missing_field-tombstone", None, {}, "missing_field", ["tombstone"]),
    ("missing_field-ts-no-record-ts", _raw(_ok(ts=_DROP)), {}, "missing_field", ["ts"]),
    ("missing_field-in-batch", _raw([_ok(), _ok(value=_DROP)]), {}, "missing_field", ["[1]", "value"]),
    ("wrong_type-series-number", _raw(_ok(series=5)), {}, "wrong_type", ["series", "5"]),
    ("wrong_type-series-blank", _raw(_ok(series="  ")), {}, "wrong_type", ["series", '"  "']),
    ("wrong_type-value-string", _raw(_ok(value="0.73")), {}, "wrong_type", ["value", '"0.73"']),
    ("wrong_type-value-bool", _raw(_ok(value=True)), {}, "wrong_type", ["value", "true"]),
    ("wrong_type-value-null", _raw(_ok(value=None)), {}, "wrong_type", ["value", "null"]),
    (
        "wrong_type-values-list",
        _raw(_ok(value=_DROP, values=[1, 2])),
        {},
        "wrong_type",
        ["values", "[1,2]"],
    ),
    ("wrong_type-values-empty", _raw(_ok(value=_DROP, values={})), {}, "wrong_type", ["values"]),
    (
        "wrong_type-values-member",
        _raw(_ok(value=_DROP, values={"cpu": 1, "mem": "lots"})),
        {},
        "wrong_type",
        ["values.mem", '"lots"'],
    ),
    ("wrong_type-labels-number", _raw(_ok(labels={"host": 1})), {}, "wrong_type", ["labels", '{"host":1}']),
    ("wrong_type-labels-string", _raw(_ok(labels="host=web")), {}, "wrong_type", ["labels", '"host=web"']),
    ("wrong_type-ts-bool", _raw(_ok(ts=True)), {}, "wrong_type", ["ts", "true"]),
    ("wrong_type-ts-object", _raw(_ok(ts={"s": 1})), {}, "wrong_type", ["ts"]),
    (
        "wrong_type-in-batch",
        _raw([_ok(), _ok(value="x")]),
        {},
        "wrong_type",
        ["[1]", "value", '"x"'],
    ),
    (
        "non_finite-overflow",
        b'{"series": "a", "ts": 1795723200, "value": 1e999}',
        {},
        "non_finite",
        ["value", "inf"],
    ),
    (
        "non_finite-member-overflow",
        b'{"series": "a", "ts": 1795723200, "values": {"cpu": 1.0, "mem": -1e999}}',
        {},
        "non_finite",
        ["values.mem", "-inf"],
    ),
    ("non_finite-nan-literal", b'{"series": "a", "ts": 1795723200, "value": NaN}', {}, "non_finite", ["value", "nan"]),
    (
        "non_finite-infinity-literal",
        b'[{"series": "a", "ts": 1795723200, "value": 1}, {"series": "a", "ts": 1795723201, "value": Infinity}]',
        {},
        "non_finite",
        ["[1]", "value", "inf"],
    ),
    ("bad_timestamp-overflow", b'{"series": "a", "ts": 1e999, "value": 1}', {}, "bad_timestamp", ["ts"]),
    (
        "bad_timestamp-no-zone",
        _raw(_ok(ts="2026-11-26T20:00:00")),
        {},
        "bad_timestamp",
        ["ts", '"2026-11-26T20:00:00"'],
    ),
    ("bad_timestamp-garbage", _raw(_ok(ts="yesterday")), {}, "bad_timestamp", ["ts", '"yesterday"']),
    ("bad_timestamp-date-only", _raw(_ok(ts="2026-11-26")), {}, "bad_timestamp", ["ts"]),
    ("bad_timestamp-milliseconds", _raw(_ok(ts=1732650000000)), {}, "bad_timestamp", ["ts", "1732650000000"]),
    ("bad_timestamp-negative", _raw(_ok(ts=-5)), {}, "bad_timestamp", ["ts", "-5"]),
    ("bad_timestamp-nan-string", _raw(_ok(ts="nan")), {}, "bad_timestamp", ["ts"]),
    ("bad_timestamp-in-batch", _raw([_ok(), _ok(ts="soon")]), {}, "bad_timestamp", ["[1]", "ts", '"soon"']),
]


@pytest.mark.parametrize(("name", "raw", "kwargs", "reason", "details"), CASES, ids=[c[0] for c in CASES])
def test_rejection_reason_and_detail(name, raw, kwargs, reason, details):
    result = decode_json(raw, **kwargs)
    assert isinstance(result, Rejected), f"{name}: accepted {result}"
    assert result.reason == reason, result.detail
    assert result.reason in REASONS
    for text in details:
        assert text in result.detail, f"{text!r} not in {result.detail!r}"


def test_every_reason_has_a_case():
    assert {c[3] for c in CASES} == set(REASONS)


def test_oversize_limit_is_inclusive():
    raw = _raw(_ok())
    assert isinstance(decode_json(raw, max_bytes=len(raw)), list)
    rejected = decode_json(raw, max_bytes=len(raw) - 1)
    assert isinstance(rejected, Rejected) and rejected.reason == "oversize"
    assert str(len(raw)) in rejected.detail


def test_bad_json_keeps_going_after_a_rejection():
    assert isinstance(decode_json(b"{nope"), Rejected)
    assert decode_json(_raw(_ok())) == [Point("web-01/cpu", T0, {UNIVARIATE: 0.5}, {})]


def test_long_offending_values_are_shortened_in_the_detail():
    result = decode_json(_raw(_ok(value="x" * 500)))
    assert isinstance(result, Rejected) and result.reason == "wrong_type"
    assert "..." in result.detail and len(result.detail) < 150


def test_batch_with_one_bad_point_is_rejected_whole():
    good = [_ok(ts=T0 + i) for i in range(5)]
    batch = [*good[:3], _ok(value="bad"), *good[3:]]
    result = decode_json(_raw(batch))
    assert isinstance(result, Rejected)
    assert result.detail.startswith("[3]")
    assert "value" in result.detail and '"bad"' in result.detail


# --- accepted forms -----------------------------------------------------------------------------------------------


def test_single_univariate_point():
    doc = {"series": "web-01/cpu", "ts": 1732650000.5, "value": 0.73, "labels": {"host": "web-01", "dc": "eu1"}}
    [point] = decode_json(_raw(doc))
    assert point == Point("web-01/cpu", 1732650000.5, {"value": 0.73}, {"host": "web-01", "dc": "eu1"})
    assert isinstance(point.ts, float)


def test_integer_value_and_ts_become_floats():
    [point] = decode_json(_raw({"series": "a", "ts": 1732650000, "value": 3}))
    assert point.ts == 1732650000.0 and isinstance(point.ts, float)
    assert point.values["value"] == 3.0 and isinstance(point.values["value"], float)


def test_array_of_points_keeps_order():
    docs = [{"series": f"s{i}", "ts": T0 + i, "value": float(i)} for i in range(4)]
    points = decode_json(_raw(docs))
    assert [p.series for p in points] == ["s0", "s1", "s2", "s3"]
    assert [p.ts for p in points] == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert [p.values["value"] for p in points] == [0.0, 1.0, 2.0, 3.0]


def test_multivariate_values():
    doc = {"series": "web-01", "ts": "2026-11-26T20:00:00Z", "values": {"cpu": 0.73, "mem": 0.41, "rps": 1200}}
    [point] = decode_json(_raw(doc))
    assert dict(point.values) == {"cpu": 0.73, "mem": 0.41, "rps": 1200.0}
    assert list(point.values) == ["cpu", "mem", "rps"]
    assert point.ts == T0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T20:00:00Z", T0),
        ("2026-11-26T21:00:00+01:00", T0),
        ("2026-11-26T20:00:00+01:00", T0 - 3600),
        ("2026-11-26T15:30:00-04:30", T0),
        ("2026-11-26T20:00:00.250Z", T0 + 0.25),
    ],
)
def test_rfc3339_timestamps_convert_to_unix_seconds(text, expected):
    [point] = decode_json(_raw({"series": "a", "ts": text, "value": 1.0}))
    assert point.ts == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def test_missing_ts_falls_back_to_record_timestamp():
    [point] = decode_json(_raw({"series": "a", "value": 1.0}), record_ts=1732650000.25)
    assert point.ts == 1732650000.25


def test_null_ts_falls_back_to_record_timestamp():
    [point] = decode_json(_raw({"series": "a", "ts": None, "value": 1.0}), record_ts=T0)
    assert point.ts == T0


def test_own_ts_wins_over_record_timestamp():
    [point] = decode_json(_raw({"series": "a", "ts": T0, "value": 1.0}), record_ts=T0 + 99)
    assert point.ts == T0


def test_record_timestamp_fills_every_point_of_a_batch_that_lacks_one():
    points = decode_json(_raw([{"series": "a", "value": 1.0}, {"series": "a", "ts": T0 - 5, "value": 2.0}]), T0)
    assert [p.ts for p in points] == [T0, T0 - 5]


def test_labels_are_optional():
    [point] = decode_json(_raw({"series": "a", "ts": T0, "value": 1.0}))
    assert dict(point.labels) == {}
    [point] = decode_json(_raw({"series": "a", "ts": T0, "value": 1.0, "labels": None}))
    assert dict(point.labels) == {}


def test_both_value_and_values_is_rejected():
    result = decode_json(_raw({"series": "a", "ts": T0, "value": 1.0, "values": {"cpu": 1.0}}))
    assert isinstance(result, Rejected)
    assert "value" in result.detail


def test_numeric_string_timestamp_is_unix_seconds():
    [point] = decode_json(_raw({"series": "a", "ts": "1732650000.5", "value": 1.0}))
    assert point.ts == 1732650000.5


def test_timestamp_bounds():
    upper = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
    assert isinstance(decode_json(_raw({"series": "a", "ts": upper, "value": 1.0})), list)
    assert isinstance(decode_json(_raw({"series": "a", "ts": 0, "value": 1.0})), list)
    late = decode_json(_raw({"series": "a", "ts": upper + 1, "value": 1.0}))
    assert isinstance(late, Rejected) and late.reason == "bad_timestamp"


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"value": "x"}, "[1].value:"),
        ({"value": _DROP, "values": {"cpu": "x"}}, "[1].values.cpu:"),
        ({"ts": "soon"}, "[1].ts:"),
        ({"series": 5}, "[1].series:"),
        ({"labels": {"host": 1}}, "[1].labels:"),
    ],
)
def test_detail_names_the_field_path_inside_a_batch(bad, path):
    result = decode_json(_raw([_ok(), _ok(**bad)]))
    assert isinstance(result, Rejected)
    assert result.detail.startswith(path), result.detail


@pytest.mark.parametrize(
    ("bad", "path"),
    [({"value": "x"}, "value:"), ({"value": _DROP, "values": {"cpu": "x"}}, "values.cpu:"), ({"ts": "soon"}, "ts:")],
)
def test_detail_names_the_field_path_of_a_single_point(bad, path):
    result = decode_json(_raw(_ok(**bad)))
    assert isinstance(result, Rejected)
    assert result.detail.startswith(path), result.detail


NASTY = {
    "number-value": b'{"series": "a", "ts": 1795723200, "value": 1e999}',
    "invalid-json-with-nan": b'{"series": "a", "value": NaN,}',
    "nan-in-array": b"[NaN]",
    "nesting-200": b"[" * 200 + b"]" * 200,
    "lone-surrogate": b'{"series": "\\ud800", "ts": 1795723200, "value": 1}',
    "nul-byte": b'{"series": "a\x00b", "ts": 1795723200, "value": 1}',
}


@pytest.mark.parametrize("raw", NASTY.values(), ids=NASTY.keys())
def test_decode_json_never_raises(raw):
    result = decode_json(raw)
    assert isinstance(result, list | Rejected)


def test_decode_json_never_raises_on_very_deep_nesting():
    result = decode_json(b"[" * 100_000 + b"]" * 100_000, max_bytes=10_000_000)
    assert isinstance(result, Rejected)
    assert result.reason == "invalid_json"


def test_decode_json_never_raises_on_nesting_orjson_cannot_dump():
    result = decode_json(b"[" * 300 + b"]" * 300)
    assert isinstance(result, Rejected)
    assert result.reason == "not_an_object"


_HUGE = b"9" * 400  # parses (leniently) to a Python int that float() and orjson.dumps refuse
HUGE_INTEGERS = {
    "huge-int-value": b'{"series": "a", "ts": 1795723200, "value": ' + _HUGE + b"}",
    "huge-int-ts": b'{"series": "a", "ts": ' + _HUGE + b', "value": 1}',
    "huge-int-series": b'{"series": ' + _HUGE + b', "ts": 1795723200, "value": 1}',
    "huge-int-label": b'{"series": "a", "ts": 1795723200, "value": 1, "labels": {"h": ' + _HUGE + b"}}",
}


@pytest.mark.parametrize("raw", HUGE_INTEGERS.values(), ids=HUGE_INTEGERS.keys())
def test_decode_json_never_raises_on_huge_integers(raw):
    result = decode_json(raw)
    assert isinstance(result, Rejected)
    assert result.reason in REASONS


SINGLE = [_ok(), _ok(labels={"dc": "eu1"}), _ok(ts=int(T0), value=3), _ok(series=" "), _ok(value=True)]
LIMITED = [_ok(series="s" * 5000), _ok(labels={str(i): "" for i in range(65)}), _ok(labels={"dc": "x" * 2000})]


@pytest.mark.parametrize(
    "raw",
    [c[1] for c in CASES] + [_raw(doc) for doc in SINGLE + LIMITED] + list(NASTY.values()) + [b"\xef\xbb\xbf{}"],
)
def test_the_direct_path_of_one_point_decodes_as_the_shared_checks_do(raw):
    """decode_json parses a single point straight from the bytes; the answer is the one `decode_with` gives."""
    assert decode_json(raw, T0) == decode_with(json_points, raw, T0, DEFAULT_MAX_BYTES, DEFAULT_LIMITS)
