"""Influx line protocol, Telegraf's default `data_format` on Kafka: `measurement[,tag=v...] field=v[,...] [ts]`.

Several lines per message; blank lines and `#` comments are skipped. Escapes follow the spec: a backslash
escapes comma and space in measurements, comma, equals sign and space in tag keys, tag values and field
keys, double quote and backslash in string field values; before any other character it is literal.
Field values: floats (`1`, `-1.5e3`), integers (`1i`), unsigned integers (`1u`) and booleans
(`t T true True TRUE f F false False FALSE`, as 1.0/0.0) become numbers; string fields (`"…"`) are
skipped, the monitor scores numbers. The timestamp is an integer in `input.influx_precision` (ns by
default); without one, the Kafka record timestamp is used. A line that breaks the grammar rejects the
whole message as `invalid_line`, naming the line and what was expected there.
"""

from __future__ import annotations

import math
import re

from monitor.formats.metric import metric_points
from monitor.formats.native import Bad, checked_ts, show
from monitor.formats.options import TIME_UNITS, FormatOptions
from monitor.records import Point

# Tokens run to the first unescaped stop character; `\\.` takes an escaped character (or a literal
# backslash followed by one) as part of the token.
_NAME = re.compile(r"(?:[^\\, ]|\\.)+")
"""A measurement or a tag value: up to an unescaped comma or space."""
_KEY = re.compile(r"(?:[^\\,= ]|\\.)+")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BARE = re.compile(r"[^, ]+")
_NAME_ESCAPE = re.compile(r"\\([,= \\])")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d{1,20}")
"""At most 20 digits (2**64 has 20): longer ones are out of range anyway, and `int()` of very long strings raises."""
_BOOLEANS = {"t": 1.0, "T": 1.0, "true": 1.0, "True": 1.0, "TRUE": 1.0}
_BOOLEANS |= {"f": 0.0, "F": 0.0, "false": 0.0, "False": 0.0, "FALSE": 0.0}
_INT64 = 2**63
_UINT64 = 2**64


def decode(text: str, record_ts: float | None, options: FormatOptions) -> list[Point]:
    points: list[Point] = []
    lines = 0
    per_second = TIME_UNITS[options.influx_precision]
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip(" \t\r")  # ASCII blanks only: other spaces can start a name
        if not line or line.startswith("#"):
            continue
        lines += 1
        name, tags, fields, ts = _Line(line, f"line {number}").parse(record_ts, per_second)
        points.extend(metric_points(name, tags, fields, ts, options.fields_as))
    if not lines:
        raise Bad("empty_batch", "message has no line-protocol line (only blank lines or comments)")
    return points


class _Line:
    """A cursor over one line; each `_take` consumes a token or rejects the line at the current column."""

    def __init__(self, text: str, where: str) -> None:
        self.text, self.where, self.pos = text, where, 0

    def parse(self, record_ts: float | None, per_second: int) -> tuple[str, dict[str, str], dict[str, float], float]:
        name = _unescape(self._take(_NAME, "a measurement"))
        tags: dict[str, str] = {}
        while self._skip(","):
            key = _unescape(self._take(_KEY, "a tag key"))
            self._expect("=", f"'=' after tag key {key!r}")
            tags[key] = _unescape(self._take(_NAME, f"a value for tag {key!r}"))
        self._expect(" ", "a space before the fields")
        fields: dict[str, float] = {}
        while True:
            key = _unescape(self._take(_KEY, "a field key"))
            self._expect("=", f"'=' after field key {key!r}")
            value = self._field_value(key)
            if value is not None:
                fields[key] = value
            if not self._skip(","):
                break
        if self.pos == len(self.text):
            if record_ts is None:
                raise Bad("missing_field", f"{self.where}: no timestamp (and no record timestamp to fall back on)")
            return name, tags, fields, record_ts
        self._expect(" ", "a space before the timestamp")
        raw_ts = self.text[self.pos :]
        if not _INTEGER.fullmatch(raw_ts):
            raise Bad("bad_timestamp", f"{self.where}: timestamp must be an integer, got {show(raw_ts)}")
        return name, tags, fields, checked_ts(int(raw_ts) / per_second, f"{self.where}: timestamp", int(raw_ts))

    def _field_value(self, key: str) -> float | None:
        """The number a field value stands for, or None for a string field."""
        if self.text.startswith('"', self.pos):
            self._take(_STRING, f"a closing '\"' for string field {key!r}")
            return None
        raw = self._take(_BARE, f"a value for field {key!r}")
        if raw in _BOOLEANS:
            return _BOOLEANS[raw]
        if raw[-1] in "iu" and _INTEGER.fullmatch(raw[:-1]):
            value = int(raw[:-1])
            low, high = (-_INT64, _INT64) if raw[-1] == "i" else (0, _UINT64)
            if low <= value < high:
                return float(value)
            raise Bad("invalid_line", f"{self.where}: field {key!r}: {raw} is out of range for its type")
        if _FLOAT.fullmatch(raw):
            value = float(raw)
            if not math.isfinite(value):
                raise Bad("non_finite", f"{self.where}: field {key!r}: must be finite, got {raw}")
            return value
        raise Bad("invalid_line", f"{self.where}: field {key!r}: not a number, boolean or string, got {show(raw)}")

    def _take(self, token: re.Pattern[str], what: str) -> str:
        found = token.match(self.text, self.pos)
        if found is None:
            raise self._error(what)
        self.pos = found.end()
        return found.group()

    def _skip(self, char: str) -> bool:
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def _expect(self, char: str, what: str) -> None:
        if not self._skip(char):
            raise self._error(what)
        if char == " ":
            while self._skip(" "):
                pass

    def _error(self, what: str) -> Bad:
        rest = self.text[self.pos : self.pos + 20]
        found = f"found {show(rest)}" if rest else "found the end of the line"
        return Bad("invalid_line", f"{self.where}, column {self.pos + 1}: expected {what}, {found}")


def _unescape(token: str) -> str:
    return _NAME_ESCAPE.sub(r"\1", token)
