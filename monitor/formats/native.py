"""The native input format, and the checks every input format shares: bytes in, `Point`s or `Rejected` out.

The native format is DESIGN.md's JSON: one point object or an array of them, univariate `value` or
multivariate `values`, `ts` as Unix seconds or RFC 3339 (absent: the Kafka record timestamp).
A message is accepted or rejected whole, so the dead-letter topic always holds complete originals.
The producers' formats in `monitor.formats` parse text with the helpers here (size, UTF-8, JSON,
timestamps, labels), so one input mistake gets one reason and one wording whatever the format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import orjson

from monitor.formats.options import Limits
from monitor.records import MAX_TS, MIN_TS, UNIVARIATE, Point, PointColumns, Rejected, parse_time

REASONS = (
    "oversize",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "empty_batch",
    "missing_field",
    "wrong_type",
    "non_finite",
    "bad_timestamp",
    "over_limit",
)
"""Every reason a message can be rejected for; stable labels for metrics and dead-letter headers."""

DEFAULT_MAX_BYTES = 1_048_576
DEFAULT_LIMITS = Limits()


class Bad(Exception):
    """Carries a rejection out of nested validation; `decode_with` turns it into `Rejected`, so it never
    leaves the decoders."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


TextParser = Callable[[str, float | None], list[Point]]
"""Parses one message's text (record timestamp in seconds or None) into points; raises `Bad`."""


def decode_json(
    raw: bytes | None,
    record_ts: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Point] | Rejected:
    """Decode one native-format message; `record_ts` (seconds) stands in for a missing `ts`.

    The common message, one well-formed point of one feature, is decoded by msgspec straight from the
    bytes into `_Plain` (a daemon decodes one per record it reads: 0.8 against 1.4 µs through orjson and
    type checks in Python, docs/performance.md). Any other message is parsed once by orjson, and
    only what orjson refuses there (bytes that are not UTF-8, NaN, Infinity) goes through `decode_with`,
    which names the reason. The answer is the one `decode_with` gives, whichever way it is found."""
    if raw is not None and len(raw) <= max_bytes:
        point = _plain_message(raw)
        if point is not None:
            try:
                check_limits(point, limits, "point 0")
            except Bad as bad:
                return Rejected(bad.reason, bad.detail)
            return [point]
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            return _checked(document_points, doc, record_ts, limits)
    return decode_with(json_points, raw, record_ts, max_bytes, limits)


class _Plain(msgspec.Struct):
    """The common message: one point of one feature, numeric `ts`, labels (if any) all strings. A JSON
    integer decodes into a float field, a boolean does not, and a number beyond a float's range (1e999)
    is refused, so it reaches the general path and its `non_finite`; other fields are ignored, as they
    are anywhere in the native format."""

    series: str
    ts: float
    value: float
    labels: dict[str, str] | None = None
    values: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    """Set (to anything) only in a message that is not of the common shape: `value` and `values` together."""


_PLAIN = msgspec.json.Decoder(_Plain)


def _plain_message(raw: bytes) -> Point | None:
    """The point of a message of the common shape, decoded straight from the bytes; None for anything
    else (which the general path then accepts or rejects, naming the field at fault)."""
    try:
        return _common_point(_PLAIN.decode(raw))
    except msgspec.DecodeError:
        return None


def _common_point(plain: _Plain) -> Point | None:
    """The point of a `_Plain` whose values are usable as they are; None when one of them needs the checks
    that name the field at fault (a `ts` out of range, a blank series, `values` as well, a value that is
    not finite: JSON cannot write one, the lenient parse of `_lenient` can)."""
    ts, value, series = plain.ts, plain.value, plain.series
    if plain.values is msgspec.UNSET and MIN_TS <= ts <= MAX_TS and math.isfinite(value) and series.strip():
        return Point(series, ts, {UNIVARIATE: value}, plain.labels or {})
    return None


_SERIES, _TS, _VALUE, _VALUES, _LABELS = map(attrgetter, ("series", "ts", "value", "values", "labels"))


def decode_json_poll(
    raws: Sequence[bytes | None], max_bytes: int = DEFAULT_MAX_BYTES, limits: Limits = DEFAULT_LIMITS
) -> PointColumns | None:
    """The points of a poll whose every message is of the common shape and within `limits`, one a message
    and each the one `decode_json` gives for it, as columns; None when any message is not (the poll is then
    decoded message by message, which accepts or rejects each and names the fault).

    A long run's polls are almost always all common messages. Here each is one msgspec call, the checks
    run over the poll's columns (C loops: `map`, numpy), and no `Point`, dict or list is built per message
    (docs/performance.md)."""
    try:
        if max(map(len, raws), default=0) > max_bytes:  # a tombstone (None) has no length: TypeError
            return None
        plains = list(map(_PLAIN.decode, raws))
    except (TypeError, msgspec.DecodeError):
        return None
    n = len(plains)
    ts, values = np.fromiter(map(_TS, plains), float, n), np.fromiter(map(_VALUE, plains), float, n)
    series, labels = list(map(_SERIES, plains)), list(map(_LABELS, plains))
    if (  # `values` is finite: msgspec refuses a number beyond a float's range, and JSON has no NaN
        ((ts >= MIN_TS) & (ts <= MAX_TS)).all()
        and all(map(str.strip, series))
        and list(map(_VALUES, plains)).count(msgspec.UNSET) == n
        and _within(series, labels, limits)
    ):
        return PointColumns(series, ts, values, labels)
    return None


def _within(series: list[str], labels: list[dict[str, str] | None], limits: Limits) -> bool:
    """Whether every point is within `limits`: the checks of `check_limits`, over columns."""
    if max(map(len, series), default=0) > limits.max_series_id_length:
        return False
    given = list(filter(None, labels))
    return (
        max(map(len, given), default=0) <= limits.max_labels
        and max(map(len, chain.from_iterable(given)), default=0) <= limits.max_label_name_length
        and max(map(len, chain.from_iterable(map(dict.values, given))), default=0) <= limits.max_label_value_length
    )


def decode_with(
    parse: TextParser, raw: bytes | None, record_ts: float | None, max_bytes: int, limits: Limits = DEFAULT_LIMITS
) -> list[Point] | Rejected:
    """The byte-level checks every format shares, then `parse`, then the `limits` on what the points
    would make the monitor hold; bad input comes back as `Rejected`."""
    try:
        text = message_text(raw, max_bytes)
    except Bad as bad:
        return Rejected(bad.reason, bad.detail)
    return _checked(parse, text, record_ts, limits)


def _checked(
    parse: Callable[[Any, float | None], list[Point]], source: Any, record_ts: float | None, limits: Limits
) -> list[Point] | Rejected:
    """The points `parse` makes of `source`, each within `limits`; `Rejected` for the first fault of either."""
    try:
        found = parse(source, record_ts)
        for i, point in enumerate(found):
            check_limits(point, limits, f"point {i}")
        return found
    except Bad as bad:
        return Rejected(bad.reason, bad.detail)


def check_limits(point: Point, limits: Limits, where: str) -> None:
    """`Bad` (`over_limit`) naming the field, its size and the setting it exceeds."""
    if len(point.series) > limits.max_series_id_length:
        _over(f"{where}: series id {show(point.series)} is {len(point.series)} characters", "max_series_id_length",
              limits.max_series_id_length)  # fmt: skip
    if len(point.labels) > limits.max_labels:
        _over(f"{where}: {len(point.labels)} labels", "max_labels", limits.max_labels)
    for name, value in point.labels.items():
        if len(name) > limits.max_label_name_length:
            _over(f"{where}: label name {show(name)} is {len(name)} characters", "max_label_name_length",
                  limits.max_label_name_length)  # fmt: skip
        if len(value) > limits.max_label_value_length:
            _over(f"{where}: labels.{name} is {len(value)} characters", "max_label_value_length",
                  limits.max_label_value_length)  # fmt: skip


def _over(what: str, setting: str, limit: int) -> None:
    raise Bad("over_limit", f"{what}, limit is {limit} (input.{setting})")


def message_text(raw: bytes | None, max_bytes: int) -> str:
    """The message as text, or `Bad` for a tombstone, an oversize message or bytes that are not UTF-8."""
    if raw is None:
        raise Bad("missing_field", "message has no value (tombstone)")
    if len(raw) > max_bytes:
        raise Bad("oversize", f"message is {len(raw)} bytes, limit is {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Bad("invalid_utf8", f"not UTF-8 at byte {exc.start}") from None
    return text


def json_document(text: str) -> Any:
    """The parsed JSON of a message, or `Bad` (`invalid_json`)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return _lenient(text, exc)


def json_points(text: str, record_ts: float | None) -> list[Point]:
    """The native format: one point object or a non-empty array of them."""
    return document_points(json_document(text), record_ts)


def document_points(doc: Any, record_ts: float | None) -> list[Point]:
    """The points of a parsed native-format message, or `Bad` naming the field at fault."""
    if isinstance(doc, list):
        if not doc:
            raise Bad("empty_batch", "message is an empty array")
        return [_point(item, f"[{i}].", record_ts) for i, item in enumerate(doc)]
    return [_point(doc, "", record_ts)]


def _lenient(text: str, error: Exception) -> Any:
    """Parse what orjson refuses only because of NaN, Infinity or overflowing numbers (Python's
    json.dumps writes them), so such a message is rejected as `non_finite`, the reason a producer can fix."""
    try:
        # Integers too long for a float become inf (a `non_finite` rejection) instead of Python ints.
        return json.loads(text, parse_int=lambda digits: int(digits) if len(digits) <= 18 else float(digits))
    except (ValueError, RecursionError):
        raise Bad("invalid_json", f"not JSON: {error}") from None


def _point(doc: Any, where: str, record_ts: float | None) -> Point:
    """A point from one object: the common shape is taken as `_Plain`, anything else (and every bad
    input) goes through `_checked_point`, which names the field at fault."""
    return _plain_point(doc) or _checked_point(doc, where, record_ts)


def _plain_point(doc: Any) -> Point | None:
    """The point of a parsed object of the common shape (`_Plain`, the same rule as a single-point
    message's); None for anything else. An object with `values` is refused by the conversion itself (a
    parsed value is no `msgspec.Raw`)."""
    try:
        return _common_point(msgspec.convert(doc, _Plain))
    except msgspec.ValidationError:
        return None


def _checked_point(doc: Any, where: str, record_ts: float | None) -> Point:
    if not isinstance(doc, dict):
        raise Bad("not_an_object", f"{where.rstrip('.') or 'message'}: must be a JSON object, got {show(doc)}")
    series = doc.get("series")
    if series is None:
        raise Bad("missing_field", f"{where}series: required")
    if not isinstance(series, str) or not series.strip():
        raise Bad("wrong_type", f"{where}series: must be a non-empty string, got {show(series)}")
    return Point(
        series=series,
        ts=timestamp(doc.get("ts"), f"{where}ts", record_ts),
        values=_values(doc, where),
        labels=string_map(doc.get("labels"), f"{where}labels"),
    )


def _values(doc: dict[str, Any], where: str) -> dict[str, float]:
    has_value, has_values = "value" in doc, "values" in doc
    if has_value == has_values:
        raise Bad("missing_field", f"{where}value: exactly one of 'value' or 'values' is required")
    if has_value:
        return {UNIVARIATE: number(doc["value"], f"{where}value")}
    values = doc["values"]
    if not isinstance(values, dict) or not values:
        raise Bad("wrong_type", f"{where}values: must be a non-empty object, got {show(values)}")
    return {str(name): number(v, f"{where}values.{name}") for name, v in values.items()}


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Bad("wrong_type", f"{where}: must be a number, got {show(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise Bad("non_finite", f"{where}: must be finite, got {value!r}")
    return number


def timestamp(value: Any, where: str, record_ts: float | None, per_second: int = 1) -> float:
    """Seconds from a number of `1/per_second` units or an RFC 3339 string; `record_ts` when absent."""
    if value is None:
        if record_ts is None:
            raise Bad("missing_field", f"{where}: required (no record timestamp to fall back on)")
        return record_ts
    if isinstance(value, str):
        try:
            ts = parse_time(value)
        except ValueError:
            raise Bad("bad_timestamp", f"{where}: not an RFC 3339 time with a zone, got {show(value)}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ts = value / per_second
    else:
        raise Bad("wrong_type", f"{where}: must be Unix seconds or an RFC 3339 string, got {show(value)}")
    return checked_ts(ts, where, value)


def checked_ts(ts: float, where: str, shown: Any) -> float:
    """`ts` if it lies in 1970..2100; outside, it is almost surely in the wrong unit."""
    if not (MIN_TS <= ts <= MAX_TS):
        raise Bad("bad_timestamp", f"{where}: {shown!r} is outside 1970..2100 (wrong time unit?)")
    return float(ts)


def string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Bad("wrong_type", f"{where}: must be an object of strings, got {show(value)}")
    return value


def show(value: Any) -> str:
    """A short rendering of an offending value for error details."""
    try:
        text = orjson.dumps(value).decode() if not isinstance(value, float) else repr(value)
    except TypeError:  # deeper than orjson writes, or an integer beyond 64 bits
        text = repr(value)[:60]
    return text if len(text) <= 60 else text[:57] + "..."
