"""Alert lifecycle per series: pending → firing → resolved.

An alert fires after `for_windows` consecutive anomalous windows and resolves after `resolve_after`
consecutive normal ones. A run whose score stays under `confirm_ratio` × its threshold fires only once
it has lasted `confirm_after` windows: a healthy series' score grazes its threshold now and then (the
tail of its own noise), a real change either goes clearly over or stays over. Within `cooldown` windows
after an alert resolved, the series fires again only at critical severity, so an incident whose score
hovers about the threshold pages once. Every time in an alert is data time (window end timestamps),
never the wall clock, and the id is derived from (detector, series, started_at): replaying the same
records after a crash produces the same messages, which consumers can de-duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from monitor.engine.slots import Slots
from monitor.engine.verdicts import VerdictBatch
from monitor.records import Alert, Verdict, alert_id

TOP_FEATURES = 3
NEVER_RESOLVED = 1 << 40
"""`since_resolved` of a series that has had no alert: past any `cooldown`."""


@dataclass(frozen=True, slots=True)
class AlertSettings:
    for_windows: int = 1
    """Consecutive anomalous windows before an alert fires (the Prometheus `for`)."""
    resolve_after: int = 8
    """Consecutive normal windows before a firing alert resolves."""
    critical_ratio: float = 2.0
    """Score / threshold at or above which the severity is critical instead of warning."""
    precision_verdicts: int = 100
    """How many of the latest verdicts on the feedback topic the exported precision covers."""
    cooldown: int = 512
    """Windows after an alert of a series resolves during which it fires again only at critical severity
    (score at least `critical_ratio` x threshold), so one flapping incident pages once (0: off)."""
    confirm_after: int = 16
    """Anomalous windows in a row before a run whose score is still under `confirm_ratio` x its threshold
    fires (1: off): a score that grazes its threshold for a moment is the tail of a healthy series' noise."""
    confirm_ratio: float = 1.1
    """Score / threshold at or above which an anomalous run fires without waiting for `confirm_after`."""


class AlertTracker:
    """Follows every series of one detector and emits an `Alert` when one fires or resolves.

    The counts of every series live in arrays indexed by slot, so a batch of verdicts is followed with a
    few numpy operations; `Alert` objects exist only for open alerts and the events themselves.
    """

    def __init__(self, detector: str, settings: AlertSettings) -> None:
        self.detector = detector
        self.settings = settings
        self._above = np.zeros(0, dtype=np.int64)
        self._below = np.zeros(0, dtype=np.int64)
        self._first = np.zeros(0)
        """Window end of the first of the current run of anomalous verdicts: the alert's `started_at`."""
        self._last = np.zeros(0)
        """Window end of the series' newest judged window: the data time of a dismissal."""
        self._open = np.zeros(0, dtype=bool)
        self._since = np.zeros(0, dtype=np.int64)
        """Judged windows since the series' last alert resolved (or was dismissed), for `cooldown`."""
        self._firing: dict[int, Alert] = {}
        self._slots = Slots(self, ("_above", "_below", "_first", "_last", "_open", "_since"))

    def observe(self, verdict: Verdict, model_version: str) -> Alert | None:
        """Follow one verdict (`observe_many` for a batch of one)."""
        batch = VerdictBatch.of([verdict], tuple(verdict.feature_shares))
        events = self.observe_many(batch, np.array([0]), model_version)
        return events[0][1] if events else None

    def observe_many(self, batch: VerdictBatch, rows: np.ndarray, model_version: str) -> list[tuple[int, Alert]]:
        """Follow the verdicts of `rows` (each of another series); returns (row, alert) per event."""
        rows = rows[~batch.warming_up[rows]]
        slots = self._slots.of([batch.series[i] for i in rows.tolist()], self._slot)
        anomalous = batch.anomalous[rows]
        above = np.where(anomalous, self._above[slots] + 1, 0)
        below = np.where(anomalous, 0, self._below[slots] + 1)
        self._above[slots], self._below[slots] = above, below
        self._last[slots] = batch.ts[rows]
        started = anomalous & (above == 1)
        self._first[slots[started]] = batch.ts[rows[started]]
        is_open = self._open[slots]
        since = self._since[slots] + 1
        cooling = batch.cooling[rows] = since <= self.settings.cooldown
        score, threshold = batch.score[rows], batch.threshold[rows]
        critical = score >= self.settings.critical_ratio * threshold
        confirmed = (above >= self.settings.confirm_after) | (score >= self.settings.confirm_ratio * threshold)
        fire = anomalous & ~is_open & (above >= self.settings.for_windows) & confirmed & (critical | ~cooling)
        resolve = ~anomalous & is_open & (below >= self.settings.resolve_after)
        self._since[slots] = np.where(resolve, 0, since)
        events = []
        for j in np.flatnonzero(fire | resolve):
            slot, verdict = int(slots[j]), batch.verdict(int(rows[j]))
            if fire[j]:
                alert = self._firing[slot] = self._fired(float(self._first[slot]), verdict, model_version)
            else:
                alert = self._resolved(self._firing.pop(slot), verdict)
            self._open[slot] = bool(fire[j])
            events.append((int(rows[j]), alert))
        return events

    def dismiss(self, series: str, alert_id: str, by: str | None) -> Alert | None:
        """Resolve the series' open alert `alert_id` as dismissed (a person judged it a false positive);
        None when that alert is not open. The anomalous run it belongs to starts over, so it cannot fire
        again under the same id; the thresholds decide whether the run's later windows are anomalous."""
        slot = self._slots.get(series)
        firing = self._firing.get(slot) if slot is not None else None
        if firing is None or firing.alert_id != alert_id:
            return None
        del self._firing[slot]
        self._open[slot], self._above[slot], self._since[slot] = False, 0, 0
        at = float(self._last[slot])
        return replace(
            firing, status="resolved", at=at, ended_at=at, resolution="dismissed", resolved_by=by or "unknown"
        )

    def firing(self) -> list[Alert]:
        """The alerts open right now."""
        return list(self._firing.values())

    def forget(self, series: str) -> None:
        slot = self._slots.pop(series)
        if slot is not None:
            self._firing.pop(slot, None)

    def snapshot(self, series: str) -> dict[str, Any] | None:
        """The series' alert state (counts, start of the anomalous run, open alert) for `restore`, so an
        alert open before a restart resolves with its own id afterwards instead of firing again."""
        slot = self._slots.get(series)
        if slot is None:
            return None
        return {
            "above": int(self._above[slot]),
            "below": int(self._below[slot]),
            "first_above_ts": float(self._first[slot]),
            "last_ts": float(self._last[slot]),
            "since_resolved": int(self._since[slot]),
            "firing": self._firing.get(slot),
        }

    def restore(self, series: str, state: Mapping[str, Any]) -> None:
        self.forget(series)
        slot = self._slot(series)
        self._above[slot], self._below[slot] = int(state["above"]), int(state["below"])
        if "first_above" in state:  # written before the start was kept as a time: the whole verdict
            self._first[slot] = state["first_above"].ts if state["first_above"] is not None else 0.0
        else:
            self._first[slot] = float(state["first_above_ts"])
        self._last[slot] = float(state.get("last_ts", self._first[slot]))
        self._since[slot] = int(state.get("since_resolved", NEVER_RESOLVED))  # written before `cooldown`: none
        if state["firing"] is not None:
            self._firing[slot] = state["firing"]
        self._open[slot] = state["firing"] is not None

    def _slot(self, series: str) -> int:
        slot = self._slots.get(series)
        if slot is not None:
            return slot
        slot = self._slots.add(series)
        self._above[slot] = self._below[slot] = 0
        self._since[slot] = NEVER_RESOLVED
        self._last[slot] = 0.0
        self._open[slot] = False
        return slot

    def _fired(self, started_at: float, verdict: Verdict, model_version: str) -> Alert:
        return Alert(
            alert_id=alert_id(self.detector, verdict.series, started_at),
            status="firing",
            detector=self.detector,
            series=verdict.series,
            labels=verdict.labels,
            model_version=model_version,
            started_at=started_at,
            at=verdict.ts,
            ended_at=None,
            score=verdict.score,
            threshold=verdict.threshold,
            severity=self._severity(verdict),
            window_start=verdict.window_start,
            window_end=verdict.ts,
            top_features=_top(verdict.feature_shares),
        )

    def _resolved(self, firing: Alert, verdict: Verdict) -> Alert:
        return replace(
            firing,
            status="resolved",
            at=verdict.ts,
            ended_at=verdict.ts,
            score=verdict.score,
            threshold=verdict.threshold,
            window_start=verdict.window_start,
            window_end=verdict.ts,
            resolution="normal",
        )

    def _severity(self, verdict: Verdict) -> str:
        ratio = verdict.score / verdict.threshold if verdict.threshold > 0 else float("inf")
        return "critical" if ratio >= self.settings.critical_ratio else "warning"


def _top(shares: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    ranked = sorted(shares.items(), key=lambda kv: kv[1], reverse=True)
    return tuple(ranked[:TOP_FEATURES])
