"""Alert lifecycle per series: pending → firing → resolved.

An alert fires after `for_windows` consecutive anomalous windows and resolves after `resolve_after`
consecutive normal ones. Every time in an alert is data time (window end timestamps), never the wall
clock, and the id is derived from (detector, series, started_at): replaying the same records after a
crash produces the same messages, which consumers can de-duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from monitor.records import Alert, Verdict, alert_id

TOP_FEATURES = 3


@dataclass(frozen=True, slots=True)
class AlertSettings:
    for_windows: int = 1
    """Consecutive anomalous windows before an alert fires (the Prometheus `for`)."""
    resolve_after: int = 128
    """Consecutive normal windows before a firing alert resolves."""
    critical_ratio: float = 2.0
    """Score / threshold at or above which the severity is critical instead of warning."""


@dataclass(slots=True)
class _SeriesState:
    above: int = 0
    below: int = 0
    first_above: Verdict | None = None
    firing: Alert | None = None


class AlertTracker:
    """Follows every series of one detector and emits an `Alert` when one fires or resolves."""

    def __init__(self, detector: str, settings: AlertSettings) -> None:
        self.detector = detector
        self.settings = settings
        self._series: dict[str, _SeriesState] = {}

    def observe(self, verdict: Verdict, model_version: str) -> Alert | None:
        state = self._series.setdefault(verdict.series, _SeriesState())
        if verdict.warming_up:
            return None
        if verdict.anomalous:
            state.below = 0
            state.above += 1
            if state.above == 1:
                state.first_above = verdict
            if state.firing is None and state.above >= self.settings.for_windows:
                state.firing = self._firing(state, verdict, model_version)
                return state.firing
            return None
        state.above = 0
        state.below += 1
        if state.firing is not None and state.below >= self.settings.resolve_after:
            resolved = self._resolved(state.firing, verdict)
            state.firing = None
            return resolved
        return None

    def firing(self) -> list[Alert]:
        """The alerts open right now."""
        return [s.firing for s in self._series.values() if s.firing is not None]

    def forget(self, series: str) -> None:
        self._series.pop(series, None)

    def snapshot(self, series: str) -> dict[str, Any] | None:
        """The series' alert state (counts, first anomalous verdict, open alert) for `restore`, so an alert
        open before a restart resolves with its own id afterwards instead of firing again."""
        state = self._series.get(series)
        if state is None:
            return None
        return {"above": state.above, "below": state.below, "first_above": state.first_above, "firing": state.firing}

    def restore(self, series: str, state: Mapping[str, Any]) -> None:
        self._series[series] = _SeriesState(
            int(state["above"]), int(state["below"]), state["first_above"], state["firing"]
        )

    def _firing(self, state: _SeriesState, verdict: Verdict, model_version: str) -> Alert:
        assert state.first_above is not None
        started_at = state.first_above.ts
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
        )

    def _severity(self, verdict: Verdict) -> str:
        ratio = verdict.score / verdict.threshold if verdict.threshold > 0 else float("inf")
        return "critical" if ratio >= self.settings.critical_ratio else "warning"


def _top(shares: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    ranked = sorted(shares.items(), key=lambda kv: kv[1], reverse=True)
    return tuple(ranked[:TOP_FEATURES])
