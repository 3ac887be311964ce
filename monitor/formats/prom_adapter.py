"""prometheus-kafka-adapter's JSON: `{"timestamp": "…Z", "value": "9876543210", "name": "up", "labels": {…}}`.

One sample per message, as the adapter writes them from Prometheus remote write. The value is a string
(Go's formatting of a float64): "NaN" (Prometheus' staleness markers are NaNs) and "+Inf"/"-Inf" are
rejected as `non_finite`, anything that is not a number as `wrong_type`. The series id is the sample's
name with its labels sorted, as Prometheus writes a series: `up{instance="web-01:9100",job="node"}`.
`labels` (without `__name__`) become the point's labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from monitor.formats.native import Bad, json_document, show, string_map, timestamp
from monitor.formats.options import FormatOptions
from monitor.records import UNIVARIATE, Point

_LABEL_VALUE_SPECIALS = re.compile(r'([\\"])')


def decode(text: str, record_ts: float | None, options: FormatOptions) -> list[Point]:
    doc = json_document(text)
    if not isinstance(doc, dict):
        raise Bad("not_an_object", f"message: must be a JSON object, got {show(doc)}")
    name = doc.get("name")
    if name is None:
        raise Bad("missing_field", "name: required")
    if not isinstance(name, str) or not name:
        raise Bad("wrong_type", f"name: must be a non-empty string, got {show(name)}")
    labels = {k: v for k, v in string_map(doc.get("labels"), "labels").items() if k != "__name__"}
    ts = timestamp(doc.get("timestamp"), "timestamp", record_ts)
    return [Point(series_id(name, labels), ts, {UNIVARIATE: _value(doc.get("value"))}, labels)]


def series_id(name: str, labels: Mapping[str, str]) -> str:
    """`name{a="1",b="2"}` with label values escaped as in Prometheus' text format; `name` without labels."""
    if not labels:
        return name
    pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{pairs}}}"


def _escape(value: str) -> str:
    return _LABEL_VALUE_SPECIALS.sub(r"\\\1", value).replace("\n", "\\n")


def _value(value: object) -> float:
    if value is None:
        raise Bad("missing_field", "value: required")
    if not isinstance(value, str):
        raise Bad("wrong_type", f"value: must be a string (the adapter writes numbers as strings), got {show(value)}")
    try:
        number = float(value)
    except ValueError:
        raise Bad("wrong_type", f"value: not a number, got {show(value)}") from None
    if not math.isfinite(number):
        hint = " (Prometheus' staleness marker is a NaN)" if math.isnan(number) else ""
        raise Bad("non_finite", f"value: must be finite, got {show(value)}{hint}")
    return number
