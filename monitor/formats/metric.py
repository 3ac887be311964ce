"""Telegraf's data model (a measurement with tags, several fields and one timestamp) → `Point`s.

Telegraf JSON and Influx line protocol carry the same model, so they share this mapping and a metric gets
the same series id whichever of the two a producer writes. The series key is the line-protocol series
key (measurement, then tags sorted by key, with line-protocol escapes, so that distinct tag sets never
collide); with `fields_as: series` each field is its own univariate series `<key>/<field>`, with
`fields_as: features` the fields are the features of one multivariate point of series `<key>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from monitor.records import UNIVARIATE, Point

_MEASUREMENT_SPECIALS = re.compile(r"([, \\])")
_KEY_SPECIALS = re.compile(r"([,= \\])")


def series_key(name: str, tags: Mapping[str, str]) -> str:
    """`cpu,cpu=cpu0,host=web-01` for measurement `cpu` with tags host=web-01, cpu=cpu0."""
    tag_pairs = (f"{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()))
    return ",".join([_MEASUREMENT_SPECIALS.sub(r"\\\1", name), *tag_pairs])


def _escape_key(text: str) -> str:
    return _KEY_SPECIALS.sub(r"\\\1", text)


def metric_points(
    name: str, tags: Mapping[str, str], fields: Mapping[str, float], ts: float, fields_as: str
) -> list[Point]:
    """The points of one metric; none when it has no numeric field (only strings, say)."""
    if not fields:
        return []
    key, labels = series_key(name, tags), dict(tags)
    if fields_as == "features":
        return [Point(key, ts, dict(fields), labels)]
    return [Point(f"{key}/{field}", ts, {UNIVARIATE: value}, labels) for field, value in fields.items()]
