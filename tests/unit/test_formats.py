"""The format registry, Telegraf JSON and prometheus-kafka-adapter JSON, on messages from their docs."""

from __future__ import annotations

import orjson
import pytest

from monitor.config import INPUT_FORMATS, parse_config
from monitor.errors import ConfigError
from monitor.formats import FORMATS, REASONS, FormatOptions, Limits, decoder
from monitor.formats.native import decode_json
from monitor.records import UNIVARIATE, Point, Rejected, encode_point

from ..producer_formats import influx_line, prometheus_sample, telegraf_metric

MAX = 1_048_576
T0 = 1458229140.0

# Copied from Telegraf's JSON serializer documentation (plugins/serializers/json/README.md).
TELEGRAF_DOC_METRIC = b"""{
    "fields": {"field_1": 30, "field_2": 4, "field_N": 59, "n_images": 660},
    "name": "docker",
    "tags": {"host": "raynor"},
    "timestamp": 1458229140
}"""
TELEGRAF_DOC_BATCH = b'{"metrics": [' + TELEGRAF_DOC_METRIC + b", " + TELEGRAF_DOC_METRIC + b"]}"
# Copied from prometheus-kafka-adapter's README.
PROMETHEUS_DOC_SAMPLE = b"""{
  "timestamp": "1970-01-01T00:00:00Z",
  "value": "9876543210",
  "name": "up",

  "labels": {
    "__name__": "up",
    "label1": "value1",
    "label2": "value2"
  }
}"""


def decode(fmt: str, raw: bytes | None, record_ts: float | None = None, **options: str) -> list[Point] | Rejected:
    return decoder(fmt, MAX, FormatOptions(**options))(raw, record_ts)


def rejected(fmt: str, raw: bytes, **options: str) -> Rejected:
    result = decode(fmt, raw, **options)
    assert isinstance(result, Rejected), f"accepted {result}"
    assert result.reason in REASONS
    return result


# --- the registry ------------------------------------------------------------------------------------------------


def test_config_accepts_exactly_the_registered_formats():
    assert INPUT_FORMATS == FORMATS == ("json", "telegraf_json", "influx", "prometheus_adapter")
    for fmt in FORMATS:
        assert parse_config({"input": {"format": fmt}}).input_format == fmt


def test_input_options_are_parsed_and_checked():
    doc = {"influx_precision": "ms", "telegraf_timestamp_units": "us", "fields_as": "features"}
    assert parse_config({"input": doc}).input_options == FormatOptions("ms", "us", "features")
    assert parse_config({}).input_options == FormatOptions("ns", "s", "series")
    for key, value in [("influx_precision", "h"), ("telegraf_timestamp_units", 1), ("fields_as", "rows")]:
        with pytest.raises(ConfigError, match=rf"^config.yaml: input\.{key}: .*got "):
            parse_config({"input": {key: value}})


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_shares_the_byte_level_checks(fmt):
    assert rejected(fmt, b"\xff\xfe").reason == "invalid_utf8"
    assert decoder(fmt, 10)(b"x" * 11, None) == Rejected("oversize", "message is 11 bytes, limit is 10")
    assert decode(fmt, None).reason == "missing_field"  # a tombstone


def _message(fmt: str, tags: dict[str, str]) -> bytes:
    """One metric with these tags (labels) in format `fmt`."""
    if fmt == "json":
        return orjson.dumps({"series": "web/cpu", "ts": T0, "value": 1.0, "labels": tags})
    if fmt == "influx":
        return influx_line("cpu", tags, {"usage": 1.0}, int(T0) * 10**9).encode()
    if fmt == "telegraf_json":
        return orjson.dumps(telegraf_metric("cpu", tags, {"usage": 1.0}, T0))
    return prometheus_sample("up", tags, 1.0, T0)


SMALL = Limits(max_series_id_length=200, max_labels=4, max_label_name_length=8, max_label_value_length=12)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("tags", "setting"),
    [
        ({"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}, "input.max_labels"),
        ({"a" * 9: "1"}, "input.max_label_name_length"),
        ({"host": "v" * 13}, "input.max_label_value_length"),
        ({"host": "v" * 12, "zone": "w" * 12, "rack": "x" * 12}, None),
    ],
)
def test_every_format_dead_letters_ids_and_labels_beyond_the_limits(fmt, tags, setting):
    decode = decoder(fmt, MAX, FormatOptions(limits=SMALL))
    result = decode(_message(fmt, tags), T0)
    if setting is None:
        assert not isinstance(result, Rejected), result
    else:
        assert isinstance(result, Rejected) and result.reason == "over_limit", result
        assert setting in result.detail, result.detail


def test_a_series_id_beyond_the_limit_is_named_with_its_length():
    raw = orjson.dumps({"series": "x" * 100_000, "ts": T0, "value": 1.0})
    result = decode_json(raw)
    assert isinstance(result, Rejected) and result.reason == "over_limit"
    assert "100000 characters, limit is 4096 (input.max_series_id_length)" in result.detail
    assert decode_json(orjson.dumps({"series": "x" * 4096, "ts": T0, "value": 1.0})) != result


def test_limits_are_configurable_and_checked():
    doc = {"max_series_id_length": 10, "max_labels": 2, "max_label_name_length": 3, "max_label_value_length": 4}
    assert parse_config({"input": doc}).input_options.limits == Limits(10, 2, 3, 4)
    assert parse_config({}).input_options.limits == Limits(4096, 64, 256, 1024)
    with pytest.raises(ConfigError, match=r"^config.yaml: input\.max_labels: must be an integer >= 1, got 0$"):
        parse_config({"input": {"max_labels": 0}})


def test_the_json_format_is_the_native_decoder():
    raw = encode_point(Point("web-01/cpu", T0, {UNIVARIATE: 0.5}, {"host": "web-01"}))
    assert decode("json", raw) == decode_json(raw)
    assert decode("json", b"[]") == decode_json(b"[]")


# --- Telegraf JSON ----------------------------------------------------------------------------------------------


def test_telegraf_documentation_metric_gives_one_series_per_field():
    points = decode("telegraf_json", TELEGRAF_DOC_METRIC)
    assert [p.series for p in points] == [
        "docker,host=raynor/field_1",
        "docker,host=raynor/field_2",
        "docker,host=raynor/field_N",
        "docker,host=raynor/n_images",
    ]
    assert points[0] == Point("docker,host=raynor/field_1", T0, {UNIVARIATE: 30.0}, {"host": "raynor"})
    assert all(p.ts == T0 and isinstance(p.values[UNIVARIATE], float) for p in points)


def test_telegraf_documentation_batch_decodes_every_metric():
    assert decode("telegraf_json", TELEGRAF_DOC_BATCH) == 2 * decode("telegraf_json", TELEGRAF_DOC_METRIC)


def test_telegraf_fields_as_features_make_one_multivariate_point():
    [point] = decode("telegraf_json", TELEGRAF_DOC_METRIC, fields_as="features")
    assert point.series == "docker,host=raynor"
    assert dict(point.values) == {"field_1": 30.0, "field_2": 4.0, "field_N": 59.0, "n_images": 660.0}


def test_telegraf_booleans_are_numbers_and_strings_are_skipped():
    doc = telegraf_metric("net", {}, {"up": True, "down": False, "state": "ok", "bytes": 10}, T0)
    assert {p.series: p.values[UNIVARIATE] for p in decode("telegraf_json", orjson.dumps(doc))} == {
        "net/up": 1.0,
        "net/down": 0.0,
        "net/bytes": 10.0,
    }
    only_strings = telegraf_metric("syslog", {"host": "a"}, {"message": "hello"}, T0)
    assert decode("telegraf_json", orjson.dumps(only_strings)) == []


@pytest.mark.parametrize(
    ("timestamp", "units", "expected"),
    [
        (1458229140, "s", T0),
        (1458229140.5, "s", T0 + 0.5),
        (1458229140123, "ms", T0 + 0.123),
        (1458229140000000, "us", T0),
        (1458229140000000000, "ns", T0),
        ("2016-03-17T15:39:00Z", "s", T0),
    ],
)
def test_telegraf_timestamp_units(timestamp, units, expected):
    doc = {"name": "m", "fields": {"v": 1}, "timestamp": timestamp}
    [point] = decode("telegraf_json", orjson.dumps(doc), telegraf_timestamp_units=units)
    assert point.ts == pytest.approx(expected, abs=1e-6)


def test_telegraf_without_timestamp_uses_the_record_timestamp():
    [point] = decode("telegraf_json", b'{"name": "m", "fields": {"v": 1}}', record_ts=T0)
    assert point.ts == T0


# (raw, expected reason, substrings of the detail)
TELEGRAF_REJECTIONS = [
    (b'{"name": "m", "fields": {"v": 1}', "invalid_json", []),
    (b"[1]", "not_an_object", ["[1]"]),
    (b'{"metrics": [{"name": "m", "fields": {"v": 1}, "timestamp": 1458229140}, 7]}', "not_an_object", ["metrics[1]"]),
    (b'{"metrics": []}', "empty_batch", ["metrics"]),
    (b'{"metrics": {"name": "m"}}', "wrong_type", ["metrics"]),
    (b'{"fields": {"v": 1}, "timestamp": 1458229140}', "missing_field", ["name"]),
    (b'{"name": "m", "timestamp": 1458229140}', "missing_field", ["fields"]),
    (b'{"name": "m", "fields": {"v": 1}}', "missing_field", ["timestamp"]),
    (b'{"name": 5, "fields": {"v": 1}, "timestamp": 1458229140}', "wrong_type", ["name", "5"]),
    (b'{"name": "m", "fields": [1], "timestamp": 1458229140}', "wrong_type", ["fields", "[1]"]),
    (b'{"name": "m", "fields": {"v": null}, "timestamp": 1458229140}', "wrong_type", ["fields.v", "null"]),
    (b'{"name": "m", "fields": {"v": {"a": 1}}, "timestamp": 1}', "wrong_type", ["fields.v"]),
    (b'{"name": "m", "tags": {"h": 1}, "fields": {"v": 1}, "timestamp": 1458229140}', "wrong_type", ["tags"]),
    (b'{"name": "m", "fields": {"v": NaN}, "timestamp": 1458229140}', "non_finite", ["fields.v", "nan"]),
    (b'{"name": "m", "fields": {"v": 1}, "timestamp": 1458229140000}', "bad_timestamp", ["1458229140000"]),
    (b'{"name": "m", "fields": {"v": 1}, "timestamp": "yesterday"}', "bad_timestamp", ['"yesterday"']),
    (b'{"name": "m", "fields": {"v": 1}, "timestamp": true}', "wrong_type", ["timestamp", "true"]),
]


@pytest.mark.parametrize(("raw", "reason", "details"), TELEGRAF_REJECTIONS)
def test_telegraf_rejections_name_the_field_and_value(raw, reason, details):
    result = rejected("telegraf_json", raw)
    assert result.reason == reason, result.detail
    for text in details:
        assert text in result.detail, f"{text!r} not in {result.detail!r}"


def test_telegraf_and_influx_give_the_same_series_for_the_same_metric():
    tags = {"host": "web 01", "cpu": "cpu,0"}
    fields = {"usage_idle": 99.5, "usage_user": 0.5}
    telegraf = decode("telegraf_json", orjson.dumps(telegraf_metric("cpu", tags, fields, T0)))
    influx = decode("influx", influx_line("cpu", tags, fields, int(T0) * 10**9).encode())
    assert telegraf == influx
    assert [p.series for p in telegraf] == [
        r"cpu,cpu=cpu\,0,host=web\ 01/usage_idle",
        r"cpu,cpu=cpu\,0,host=web\ 01/usage_user",
    ]


# --- prometheus-kafka-adapter JSON --------------------------------------------------------------------------------


def test_prometheus_adapter_documentation_sample():
    [point] = decode("prometheus_adapter", PROMETHEUS_DOC_SAMPLE)
    assert point == Point(
        'up{label1="value1",label2="value2"}', 0.0, {UNIVARIATE: 9876543210.0}, {"label1": "value1", "label2": "value2"}
    )


def test_prometheus_series_id_escapes_label_values_and_sorts_labels():
    raw = prometheus_sample("http_requests_total", {"path": '/a"b\\c', "code": "200"}, 3.0, T0)
    [point] = decode("prometheus_adapter", raw)
    assert point.series == 'http_requests_total{code="200",path="/a\\"b\\\\c"}'
    assert point.labels == {"path": '/a"b\\c', "code": "200"}
    [bare] = decode("prometheus_adapter", b'{"timestamp": "2016-03-17T15:39:00Z", "value": "1.5", "name": "up"}')
    assert bare == Point("up", T0, {UNIVARIATE: 1.5}, {})


PROMETHEUS_REJECTIONS = [
    (b'{"timestamp": "2016-03-17T15:39:00Z", "value": "NaN", "name": "up"}', "non_finite", ['"NaN"', "staleness"]),
    (b'{"timestamp": "2016-03-17T15:39:00Z", "value": "+Inf", "name": "up"}', "non_finite", ['"+Inf"']),
    (b'{"timestamp": "2016-03-17T15:39:00Z", "value": "-Inf", "name": "up"}', "non_finite", ['"-Inf"']),
    (b'{"timestamp": "2016-03-17T15:39:00Z", "value": "high", "name": "up"}', "wrong_type", ["value", '"high"']),
    (b'{"timestamp": "2016-03-17T15:39:00Z", "value": 1.5, "name": "up"}', "wrong_type", ["value", "1.5"]),
    (b'{"timestamp": "2016-03-17T15:39:00Z", "name": "up"}', "missing_field", ["value"]),
    (b'{"timestamp": "2016-03-17T15:39:00Z", "value": "1"}', "missing_field", ["name"]),
    (b'{"timestamp": "2016-03-17T15:39:00Z", "value": "1", "name": ""}', "wrong_type", ["name", '""']),
    (b'{"timestamp": "2016-03-17T15:39:00", "value": "1", "name": "up"}', "bad_timestamp", ["timestamp"]),
    (b'{"value": "1", "name": "up"}', "missing_field", ["timestamp"]),
    (b'{"timestamp": "2016-03-17T15:39:00Z", "value": "1", "name": "up", "labels": [1]}', "wrong_type", ["labels"]),
    (b'["up"]', "not_an_object", ['["up"]']),
    (b"{", "invalid_json", []),
]


@pytest.mark.parametrize(("raw", "reason", "details"), PROMETHEUS_REJECTIONS)
def test_prometheus_adapter_rejections_name_the_field_and_value(raw, reason, details):
    result = rejected("prometheus_adapter", raw)
    assert result.reason == reason, result.detail
    for text in details:
        assert text in result.detail, f"{text!r} not in {result.detail!r}"
