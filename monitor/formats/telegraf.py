"""Telegraf's `json` serializer: `{"name", "tags", "fields", "timestamp"}` or a batch `{"metrics": [...]}`.

Field values: numbers are used as they are, booleans as 1.0/0.0, strings are skipped (Telegraf puts
states and versions in string fields; the monitor scores numbers). Any other field value is a
`wrong_type` rejection. `timestamp` is a number in `input.telegraf_timestamp_units` (Telegraf's
`json_timestamp_units`, seconds by default) or, with `json_timestamp_format` set, an RFC 3339 string.
"""

from __future__ import annotations

from typing import Any

from monitor.formats.metric import metric_points
from monitor.formats.native import Bad, json_document, number, show, string_map, timestamp
from monitor.formats.options import TIME_UNITS, FormatOptions
from monitor.records import Point


def decode(text: str, record_ts: float | None, options: FormatOptions) -> list[Point]:
    doc = json_document(text)
    if isinstance(doc, dict) and "metrics" in doc and "name" not in doc:
        batch = doc["metrics"]
        if not isinstance(batch, list):
            raise Bad("wrong_type", f"metrics: must be an array, got {show(batch)}")
        if not batch:
            raise Bad("empty_batch", "metrics: empty array")
        return [p for i, m in enumerate(batch) for p in _metric(m, f"metrics[{i}].", record_ts, options)]
    return _metric(doc, "", record_ts, options)


def _metric(doc: Any, where: str, record_ts: float | None, options: FormatOptions) -> list[Point]:
    if not isinstance(doc, dict):
        raise Bad("not_an_object", f"{where.rstrip('.') or 'message'}: must be a JSON object, got {show(doc)}")
    name = _required(doc, "name", where)
    if not isinstance(name, str) or not name:
        raise Bad("wrong_type", f"{where}name: must be a non-empty string, got {show(name)}")
    fields = _required(doc, "fields", where)
    if not isinstance(fields, dict):
        raise Bad("wrong_type", f"{where}fields: must be an object, got {show(fields)}")
    values = {}
    for field, value in fields.items():
        if isinstance(value, bool):
            values[field] = float(value)
        elif not isinstance(value, str):
            values[field] = number(value, f"{where}fields.{field}")
    per_second = TIME_UNITS[options.telegraf_timestamp_units]
    ts = timestamp(doc.get("timestamp"), f"{where}timestamp", record_ts, per_second)
    return metric_points(name, string_map(doc.get("tags"), f"{where}tags"), values, ts, options.fields_as)


def _required(doc: dict[str, Any], key: str, where: str) -> Any:
    if doc.get(key) is None:
        raise Bad("missing_field", f"{where}{key}: required")
    return doc[key]
