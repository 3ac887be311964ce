"""monitor.records: the alert wire format of DESIGN.md, the point encoder, and the time helpers."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest

from monitor.formats.native import decode_json
from monitor.records import ALERT_SCHEMA, Alert, Point, alert_id, encode_alert, encode_point, format_ts, parse_time

T0 = datetime(2026, 11, 26, 20, 5, tzinfo=UTC).timestamp()
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")

ALERT_KEYS = {
    "schema",
    "alert_id",
    "status",
    "detector",
    "series",
    "labels",
    "model_version",
    "started_at",
    "at",
    "ended_at",
    "score",
    "threshold",
    "severity",
    "window",
    "top_features",
    "resolution",
    "resolved_by",
}


def firing_alert(**changes) -> Alert:
    alert = Alert(
        alert_id=alert_id("default", "web-01/cpu", T0),
        status="firing",
        detector="default",
        series="web-01/cpu",
        labels={"host": "web-01"},
        model_version="lstm-20261126-3f1a",
        started_at=T0,
        at=T0 + 60,
        ended_at=None,
        score=0.93,
        threshold=0.41,
        severity="critical",
        window_start=T0 - 31 * 60,
        window_end=T0 + 60,
        top_features=(("cpu", 0.81), ("mem", 0.19)),
    )
    return replace(alert, **changes)


def test_encode_alert_has_exactly_the_documented_keys():
    doc = orjson.loads(encode_alert(firing_alert()))
    assert set(doc) == ALERT_KEYS
    assert set(doc["window"]) == {"start", "end"}
    assert all(set(f) == {"feature", "share"} for f in doc["top_features"])


def test_encode_alert_values():
    doc = orjson.loads(encode_alert(firing_alert()))
    assert doc == {
        "schema": "monitor.alert/v1",
        "alert_id": alert_id("default", "web-01/cpu", T0),
        "status": "firing",
        "detector": "default",
        "series": "web-01/cpu",
        "labels": {"host": "web-01"},
        "model_version": "lstm-20261126-3f1a",
        "started_at": "2026-11-26T20:05:00Z",
        "at": "2026-11-26T20:06:00Z",
        "ended_at": None,
        "score": 0.93,
        "threshold": 0.41,
        "severity": "critical",
        "window": {"start": "2026-11-26T19:34:00Z", "end": "2026-11-26T20:06:00Z"},
        "top_features": [{"feature": "cpu", "share": 0.81}, {"feature": "mem", "share": 0.19}],
        "resolution": None,
        "resolved_by": None,
    }
    assert ALERT_SCHEMA == "monitor.alert/v1"


def test_encode_resolved_alert_has_ended_at():
    doc = orjson.loads(encode_alert(firing_alert(status="resolved", at=T0 + 300.5, ended_at=T0 + 300.5)))
    assert doc["status"] == "resolved"
    assert doc["ended_at"] == "2026-11-26T20:10:00.500Z"
    for key in ("started_at", "at", "ended_at"):
        assert RFC3339_Z.match(doc[key]), doc[key]
    assert RFC3339_Z.match(doc["window"]["start"]) and RFC3339_Z.match(doc["window"]["end"])


def test_encoded_timestamps_parse_back():
    doc = orjson.loads(encode_alert(firing_alert(started_at=T0 + 0.25)))
    assert parse_time(doc["started_at"]) == T0 + 0.25
    assert parse_time(doc["window"]["start"]) == T0 - 31 * 60


def test_alert_id_is_a_known_value():
    """Pinned, not compared with itself: a change of the hash input would give every replayed alert a new id."""
    started = parse_time("2026-11-26T13:58:28Z")
    assert alert_id("default", "host-01/cpu", started) == "a0da3d416fb6d327168b273d"


def test_alert_id_is_deterministic_hex():
    a = alert_id("default", "web-01/cpu", T0)
    assert re.fullmatch(r"[0-9a-f]{24}", a)
    assert a != alert_id("default", "web-02/cpu", T0)
    assert a != alert_id("other", "web-01/cpu", T0)
    assert a != alert_id("default", "web-01/cpu", T0 + 1)


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0.0, "1970-01-01T00:00:00Z"),
        (1732650000.0, "2024-11-26T19:40:00Z"),
        (1732650000.5, "2024-11-26T19:40:00.500Z"),
        (T0, "2026-11-26T20:05:00Z"),
    ],
)
def test_format_ts(ts, text):
    assert format_ts(ts) == text


@pytest.mark.parametrize(
    "point",
    [
        Point("web-01/cpu", 1732650000.5, {"value": 0.73}, {"host": "web-01", "dc": "eu1"}),
        Point("web-01/cpu", 1732650000.0, {"value": -3.0}, {}),
        Point("web-01", T0 + 0.123, {"cpu": 0.73, "mem": 0.41, "rps": 1200.0}, {"host": "web-01"}),
        Point("db-01", T0, {"value": 1.0, "mem": 2.0}, {}),
    ],
)
def test_encode_point_round_trips_through_decode_json(point):
    assert decode_json(encode_point(point)) == [point]


def test_encode_point_uses_value_for_univariate_and_values_otherwise():
    uni = orjson.loads(encode_point(Point("a", T0, {"value": 1.0})))
    assert uni == {"series": "a", "ts": T0, "value": 1.0}
    multi = orjson.loads(encode_point(Point("a", T0, {"cpu": 1.0}, {"dc": "eu1"})))
    assert multi == {"series": "a", "ts": T0, "values": {"cpu": 1.0}, "labels": {"dc": "eu1"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1732650000", 1732650000.0),
        ("1732650000.25", 1732650000.25),
        ("2026-11-26T20:05:00Z", T0),
        ("2026-11-26T21:05:00+01:00", T0),
        ("2026-11-26T20:05:00.5+00:00", T0 + 0.5),
    ],
)
def test_parse_time_accepts_seconds_and_rfc3339(text, expected):
    assert parse_time(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", ["2026-11-26T20:05:00", "2026-11-26", "yesterday", "", "20:05Z"])
def test_parse_time_rejects_other_text(text):
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity"])
def test_parse_time_rejects_non_finite_numbers(text):
    with pytest.raises(ValueError):
        parse_time(text)
