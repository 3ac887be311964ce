"""Prometheus counters for the point rules and the state changelog. Only prometheus_client here.

They sit on the exporter's registry, beside `monitor_points_dropped_total`, and are fed by deltas of the
engine's and the checkpoints' running counts after every step.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter

ADJUSTED = ("reordered", "duplicate_replaced", "gap_filled", "gap_reset")
RECORDS = ("written", "pages", "tombstones", "restored", "incompatible")


class StateMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.adjusted = Counter(
            "monitor_points_adjusted",
            "Points a point rule changed: put in time order, replaced a duplicate, filled a gap, reset a window",
            ["reason"],
            registry=registry,
        )
        self.records = Counter(
            "monitor_state_records",
            "State changelog: series states written, pages (records) written, tombstones (pages emptied), "
            "series restored, records or states incompatible",
            ["kind"],
            registry=registry,
        )
        for reason in ADJUSTED:
            self.adjusted.labels(reason)
        for kind in RECORDS:
            self.records.labels(kind)
        self._seen: dict[str, Tally[str]] = {"adjusted": Tally(), "records": Tally()}

    def observe(self, adjusted: Mapping[str, int], records: Mapping[str, int]) -> None:
        """Add what the running counts grew by since the last call."""
        for name, counts, metric in (("adjusted", adjusted, self.adjusted), ("records", records, self.records)):
            now = Tally({k: v for k, v in counts.items() if name != "records" or k in RECORDS})
            for key, delta in (now - self._seen[name]).items():
                metric.labels(key).inc(delta)
            self._seen[name] = now
