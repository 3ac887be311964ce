"""Settings of the producers' formats (`input.*` in config.yaml), apart from the decoders so config can import them."""

from __future__ import annotations

from dataclasses import dataclass

TIME_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
"""Timestamp units producers write, as units per second: integers, so an integer timestamp divides exactly
rounded (a nanosecond count beyond 2**53 would lose a digit as a float first)."""

FIELDS_AS = ("series", "features")
"""How the fields of one Telegraf/Influx metric become points: one univariate series per field, or the
features of one multivariate point."""


@dataclass(frozen=True, slots=True)
class FormatOptions:
    influx_precision: str = "ns"
    """Unit of line-protocol timestamps: Telegraf's Kafka output and InfluxDB write nanoseconds."""
    telegraf_timestamp_units: str = "s"
    """Unit of Telegraf JSON `timestamp` numbers (Telegraf's `json_timestamp_units`, default 1s)."""
    fields_as: str = "series"
