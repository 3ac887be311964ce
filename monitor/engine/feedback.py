"""People's verdicts on a detector's alerts (the feedback topic), kept per series like the rest of its state.

Each series remembers its last verdicts (alert id, verdict, when it was given), so a verdict replayed after
a crash is recognised and not counted twice, the verdicts travel with the series' checkpoint across
restarts and rebalances, and the detector's precision (the share of judged alerts that were right) over
its last `last` verdicts can be exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.records import Feedback


class FeedbackBook:
    """The recent verdicts of every series of one detector."""

    def __init__(self, last: int) -> None:
        self.last = last
        self._verdicts: dict[str, list[tuple[str, str, float]]] = {}

    def record(self, feedback: Feedback, at: float) -> bool:
        """Note a verdict given at `at`; False when that alert already has this verdict (a replay). A new
        verdict on an alert replaces the old one: the person changed their mind."""
        kept = self._verdicts.setdefault(feedback.series, [])
        if (feedback.alert_id, feedback.verdict) in ((a, v) for a, v, _ in kept):
            return False
        kept[:] = [e for e in kept if e[0] != feedback.alert_id]
        kept.append((feedback.alert_id, feedback.verdict, at))
        del kept[: -self.last]
        return True

    def precision(self) -> float | None:
        """The share of the last `last` verdicts that confirmed the alert; None before any verdict."""
        recent = sorted((at, v) for kept in self._verdicts.values() for _, v, at in kept)[-self.last :]
        if not recent:
            return None
        return sum(v == "true_positive" for _, v in recent) / len(recent)

    def snapshot(self, series: str) -> list[list[Any]] | None:
        kept = self._verdicts.get(series)
        return [list(e) for e in kept] if kept else None

    def restore(self, series: str, state: Sequence[Sequence[Any]]) -> None:
        self._verdicts[series] = [(str(a), str(v), float(at)) for a, v, at in state][-self.last :]

    def forget(self, series: str) -> None:
        self._verdicts.pop(series, None)
