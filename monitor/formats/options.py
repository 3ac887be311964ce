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
class Limits:
    """What one point may make the monitor hold (`input.max_*`): every series id and label is kept in
    memory, in checkpoints, in alerts and in metric labels, so one careless or hostile producer must not
    be able to grow them without bound. A message with a point beyond them is rejected as `over_limit`."""

    max_series_id_length: int = 4096
    """Characters of a series id (a Prometheus id holds every label, so it is the longest)."""
    max_labels: int = 64
    max_label_name_length: int = 256
    max_label_value_length: int = 1024


@dataclass(frozen=True, slots=True)
class FormatOptions:
    influx_precision: str = "ns"
    """Unit of line-protocol timestamps: Telegraf's Kafka output and InfluxDB write nanoseconds."""
    telegraf_timestamp_units: str = "s"
    """Unit of Telegraf JSON `timestamp` numbers (Telegraf's `json_timestamp_units`, default 1s)."""
    fields_as: str = "series"
    limits: Limits = Limits()
