"""Influx line protocol: the spec's examples, escapes, field types, timestamps, and every rejection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.formats import REASONS, FormatOptions, decoder
from monitor.records import UNIVARIATE, Point, Rejected

from ..producer_formats import influx_line

NS = 10**9
T = 1465839830100400200


def decode(text: str, record_ts: float | None = None, **options: str) -> list[Point] | Rejected:
    return decoder("influx", 1_048_576, FormatOptions(**options))(text.encode(), record_ts)


def values(text: str, **options: str) -> dict[str, float]:
    result = decode(text, **options)
    assert isinstance(result, list), result
    return {p.series: p.values[UNIVARIATE] for p in result}


def test_influxdb_documentation_example():
    [point] = decode("weather,location=us-midwest temperature=82 1465839830100400200")
    assert point == Point(
        "weather,location=us-midwest/temperature", T / NS, {UNIVARIATE: 82.0}, {"location": "us-midwest"}
    )


def test_telegraf_output_example_with_several_lines_comments_and_blank_lines():
    text = (
        "# written by telegraf's kafka output\n"
        "cpu,cpu=cpu0,host=tyrion usage_idle=99.5,usage_user=0.5 1483964144000000000\n"
        "\n"
        'system,host=tyrion uptime=1249632i,uptime_format="14 days, 11:07" 1483964144000000000\r\n'
        "   mem,host=tyrion available_percent=61.2 1483964144000000000   \n"
    )
    assert values(text) == {
        "cpu,cpu=cpu0,host=tyrion/usage_idle": 99.5,
        "cpu,cpu=cpu0,host=tyrion/usage_user": 0.5,
        "system,host=tyrion/uptime": 1249632.0,
        "mem,host=tyrion/available_percent": 61.2,
    }


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("1.0", 1.0),
        ("1", 1.0),
        ("-1.234456e+78", -1.234456e78),
        (".5", 0.5),
        ("+3.", 3.0),
        ("1i", 1.0),
        ("-9223372036854775808i", -9223372036854775808.0),
        ("12485903u", 12485903.0),
        ("18446744073709551615u", 18446744073709551615.0),
        *((b, 1.0) for b in ("t", "T", "true", "True", "TRUE")),
        *((b, 0.0) for b in ("f", "F", "false", "False", "FALSE")),
    ],
)
def test_field_types_become_numbers(field, expected):
    assert values(f"m v={field} 1556813561098000000") == {"m/v": expected}


def test_string_fields_are_skipped_even_with_escapes_commas_and_spaces():
    text = r'm s="a \"quoted\", string with \\ and = signs",v=2 1556813561098000000'
    assert values(text) == {"m/v": 2.0}
    assert decode('myMeasurement fieldKey="fieldValue" 1556813561098000000') == []


def test_escapes_in_measurements_tag_keys_tag_values_and_field_keys():
    [point] = decode(r"my\ Measure\,ment,tag\ Key1=tag\ Value1,k\=2=v\,2 field\ Key=100 1556813561098000000")
    assert point.labels == {"tag Key1": "tag Value1", "k=2": "v,2"}
    assert point.series == r"my\ Measure\,ment,k\=2=v\,2,tag\ Key1=tag\ Value1/field Key"
    [literal] = decode(r"my\measurement,a=b\\ v=1 1556813561098000000")
    assert literal.labels == {"a": "b\\"}
    assert literal.series == r"my\\measurement,a=b\\/v", "backslashes are escaped in ids, so ids never collide"


def test_unicode_is_kept():
    [point] = decode('myMeasurement,tagKey=🍭 fieldKey="Launch 🚀",n=1 1556813561098000000')
    assert point.labels == {"tagKey": "🍭"}


@pytest.mark.parametrize(("precision", "stamp"), [("ns", T), ("us", T // 10**3), ("ms", T // 10**6), ("s", T // NS)])
def test_precision(precision, stamp):
    [point] = decode(f"m v=1 {stamp}", influx_precision=precision)
    assert point.ts == pytest.approx(T / NS, abs=1.0)


def test_missing_timestamp_uses_the_record_timestamp():
    [point] = decode("m v=1", record_ts=1700000000.5)
    assert point.ts == 1700000000.5


def test_fields_as_features():
    [point] = decode('cpu,host=a idle=99.5,user=0.5,state="ok" 1556813561098000000', fields_as="features")
    assert point.series == "cpu,host=a" and dict(point.values) == {"idle": 99.5, "user": 0.5}


# (text, reason, substrings of the detail)
REJECTIONS = [
    ("", "empty_batch", []),
    ("# only a comment\n\n", "empty_batch", []),
    ("m", "invalid_line", ["line 1", "space before the fields"]),
    ("m ,v=1", "invalid_line", ["column 3", "field key"]),
    (",t=1 v=1", "invalid_line", ["column 1", "measurement"]),
    ("m,t v=1", "invalid_line", ["'=' after tag key 't'"]),
    ("m,t= v=1", "invalid_line", ["value for tag 't'"]),
    ("m v", "invalid_line", ["'=' after field key 'v'"]),
    ("m v=", "invalid_line", ["value for field 'v'"]),
    ("m v=1,", "invalid_line", ["field key"]),
    ('m v="open 1', "invalid_line", ["closing", "'v'"]),
    ("m v=abc 1", "invalid_line", ["field 'v'", '"abc"']),
    ("m v=nan 1", "invalid_line", ["field 'v'", '"nan"']),
    ("m v=1.5i 1", "invalid_line", ["'v'", '"1.5i"']),
    ("m v=-1u 1", "invalid_line", ["'v'", "-1u", "out of range"]),
    ("m v=9223372036854775808i 1", "invalid_line", ["out of range"]),
    ("m v=1e999 1", "non_finite", ["field 'v'", "1e999"]),
    ("m v=1 12x", "bad_timestamp", ['"12x"']),
    ("m v=1 1.5", "bad_timestamp", ['"1.5"']),
    ("m v=1 99999999999999999999", "bad_timestamp", ["99999999999999999999"]),
    ("m v=1 -5", "bad_timestamp", ["-5"]),
    ("m v=1", "missing_field", ["timestamp"]),
    ("m v=1 1556813561098000000\nm v=oops 1556813561098000000", "invalid_line", ["line 2"]),
]


@pytest.mark.parametrize(("text", "reason", "details"), REJECTIONS)
def test_rejections_name_the_line_and_what_was_expected(text, reason, details):
    result = decode(text)
    assert isinstance(result, Rejected), f"accepted {result}"
    assert result.reason == reason, result.detail
    assert result.reason in REASONS
    for part in details:
        assert part in result.detail, f"{part!r} not in {result.detail!r}"


def test_a_bad_line_rejects_the_whole_message():
    good = "m v=1 1556813561098000000"
    assert isinstance(decode(f"{good}\n{good}\nm v= 1\n{good}"), Rejected)


_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
_names = _text.filter(lambda s: not s.startswith("#"))
_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    _text,
)


@given(
    name=_names,
    tags=st.dictionaries(_text, _text, max_size=3),
    fields=st.dictionaries(_text, _values, min_size=1, max_size=4),
    ts=st.integers(0, 4102444800 * NS),
)
def test_any_written_line_decodes_to_its_numeric_fields(name, tags, fields, ts):
    result = decode(influx_line(name, tags, fields, ts))
    assert isinstance(result, list), result
    numeric = [(k, float(v)) for k, v in fields.items() if not isinstance(v, str)]
    assert len(result) == len(numeric)
    for point, (field, value) in zip(result, numeric, strict=True):
        assert point.series.endswith(f"/{field}") and point.values[UNIVARIATE] == value
    assert all(p.labels == tags and p.ts == ts / NS for p in result)
