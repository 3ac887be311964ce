"""Writers of the producers' formats, as Telegraf and prometheus-kafka-adapter write them, for the tests.

They are the test's independent model of each format (escapes by the spec, not by our decoder), used to
build property tests and the messages the integration test produces with kcat and Kafka's console producer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

FieldValue = float | int | bool | str


def influx_line(name: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ns: int | None) -> str:
    """One line of Influx line protocol; ints are written as integers (`1i`), strings quoted."""
    head = ",".join([re.sub(r"([, \\])", r"\\\1", name), *(f"{_key(k)}={_key(v)}" for k, v in sorted(tags.items()))])
    body = ",".join(f"{_key(k)}={_field(v)}" for k, v in fields.items())
    return f"{head} {body}" + ("" if ts_ns is None else f" {ts_ns}")


def _key(text: str) -> str:
    return re.sub(r"([,= \\])", r"\\\1", text)


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + re.sub(r'(["\\])', r"\\\1", value) + '"'


def telegraf_metric(name: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts: float) -> dict:
    """A metric as Telegraf's JSON serializer writes it (default `json_timestamp_units = "1s"`)."""
    return {"fields": dict(fields), "name": name, "tags": dict(tags), "timestamp": int(ts) if ts == int(ts) else ts}


def prometheus_sample(name: str, labels: Mapping[str, str], value: float, ts: float) -> bytes:
    """A sample as prometheus-kafka-adapter writes it: RFC 3339 time, value as a string, `__name__` in labels."""
    stamp = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {"timestamp": stamp, "value": repr(value), "name": name, "labels": {"__name__": name, **labels}}
    return orjson.dumps(doc)
