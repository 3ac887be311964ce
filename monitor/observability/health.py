"""Liveness and readiness, as `/healthz` and `/readyz` answer them. No I/O: the run loop reports here.

Alive means the loop polled its source within `stuck_after_s`: a commit that hangs or a scorer that
wedges stops the polling, and an orchestrator should restart such a process. Ready means every check
passes: the model is loaded, partitions are assigned, and the broker answered the last poll and commit.
Each check starts out failing with a reason, so `/readyz` says what the process still waits for, and a
change of readiness is logged once, as a lifecycle event, rather than on every poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from monitor.logs import event

log = logging.getLogger(__name__)

READINESS = {
    "model": "model not loaded",
    "partitions": "no partitions assigned",
    "broker": "broker not polled yet",
}
"""The readiness checks and the reason each gives before it first passes."""


class Health:
    """Thread-safe: the loop reports, the HTTP threads ask."""

    def __init__(
        self,
        stuck_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        checks: Iterable[str] = READINESS,
    ) -> None:
        self.stuck_after_s = stuck_after_s
        self.clock = clock
        self.last_poll = clock()
        self._failing = {name: READINESS.get(name, "not checked yet") for name in checks}
        self._lock = threading.Lock()

    def polled(self) -> None:
        self.last_poll = self.clock()

    def check(self, name: str, ok: bool, reason: str = "") -> None:
        """Record the result of one readiness check; `reason` says why it fails."""
        with self._lock:
            was_ready = not self._failing
            if ok:
                self._failing.pop(name, None)
            else:
                self._failing[name] = reason or "failing"
            ready, why = not self._failing, self._why()
        if ready and not was_ready:
            event(log, "ready")
        elif was_ready and not ready:
            event(log, "not_ready", why=why, level=logging.WARNING)

    def ready(self) -> tuple[bool, str]:
        """Whether every check passes, and else which do not and why."""
        with self._lock:
            return not self._failing, self._why() or "ready"

    def alive(self) -> tuple[bool, str]:
        idle = self.clock() - self.last_poll
        if idle > self.stuck_after_s:
            return False, f"stuck: no poll for {idle:.0f}s (limit {self.stuck_after_s:g}s)"
        return True, "ok"

    def _why(self) -> str:
        return "; ".join(f"{name}: {reason}" for name, reason in self._failing.items())
