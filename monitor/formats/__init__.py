"""Input formats by name (`input.format` in config.yaml): each turns one Kafka message into points.

`json` is the native format (`monitor.formats.native`); the others are what producers users already run put on
Kafka: Telegraf's JSON serializer (`telegraf_json`), Influx line protocol (`influx`, Telegraf's default)
and prometheus-kafka-adapter's JSON (`prometheus_adapter`). Every decoder shares the byte-level checks
and returns `list[Point] | Rejected`; a rejection's reason is one of `REASONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from monitor.formats import influx, prom_adapter, telegraf
from monitor.formats.native import REASONS as NATIVE_REASONS
from monitor.formats.native import decode_json, decode_json_poll, decode_with
from monitor.formats.options import FIELDS_AS, TIME_UNITS, FormatOptions, Limits
from monitor.records import Point, PointColumns, Rejected

Decoder = Callable[[bytes | None, float | None], list[Point] | Rejected]
"""Message value and record timestamp (Unix seconds or None) → points, or why not."""
PollDecoder = Callable[[list[bytes | None]], PointColumns | None]
"""A poll's message values → their points as columns, when every message is of a shape the format decodes
whole (else None, and each message goes through the `Decoder`)."""

_PARSERS: dict[str, Callable[[str, float | None, FormatOptions], list[Point]]] = {
    "telegraf_json": telegraf.decode,
    "influx": influx.decode,
    "prometheus_adapter": prom_adapter.decode,
}
"""The producers' formats; the native one has a decoder of its own, `decode_json`."""
FORMATS = ("json", *_PARSERS)
REASONS = (*NATIVE_REASONS, "invalid_line")
"""Every rejection reason of every format: stable labels for `monitor_messages_total` and dead letters."""

__all__ = [
    "FIELDS_AS", "FORMATS", "REASONS", "TIME_UNITS", "Decoder", "FormatOptions", "Limits", "PollDecoder", "decoder",
    "poll_decoder",
]  # fmt: skip


def decoder(name: str, max_bytes: int, options: FormatOptions | None = None) -> Decoder:
    """The decoder of format `name` (one of `FORMATS`), rejecting messages over `max_bytes` and points
    beyond `options.limits`."""
    options = options or FormatOptions()
    if name == "json":
        return partial(decode_json, max_bytes=max_bytes, limits=options.limits)
    parse = partial(_PARSERS[name], options=options)
    return partial(decode_with, parse, max_bytes=max_bytes, limits=options.limits)


def poll_decoder(name: str, max_bytes: int, options: FormatOptions | None = None) -> PollDecoder | None:
    """The decoder of a whole poll for format `name`, with `decoder`'s limits; None for a format that has
    none (the producers' formats: each message is decoded by itself)."""
    if name != "json":
        return None
    return partial(decode_json_poll, max_bytes=max_bytes, limits=(options or FormatOptions()).limits)
