"""What the run loop talks to: where messages come from (`Source`), where alerts and dead letters go
(`Sink`), what runs between polls (`Task`), and the `Summary` a run ends with. Kafka and files implement
the protocols (`monitor.kafka.source`, `monitor.kafka.sink`, `monitor.service.files`); tests use their own small ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from monitor.engine.detector import Routed
from monitor.engine.verdicts import Outcome
from monitor.records import Alert, Message, Rejected


class Source(Protocol):
    def poll(self) -> list[Message] | None:
        """A batch of messages (maybe empty); None when a finite source is exhausted."""
        ...

    def assigned(self) -> bool: ...

    def commit(self, limits: Mapping[int, int] | None = None) -> None:
        """Store the position after every polled record, but in partition p no further than `limits[p]`
        (the first record that some series' written state lacks)."""
        ...

    def lag(self) -> dict[tuple[str, int], int]: ...

    def close(self) -> None: ...


class Task(Protocol):
    def after_step(self, points: Sequence[Routed], outcome: Outcome) -> None:
        """Called after each polled batch (an empty one too), between polls, in the loop thread."""
        ...


class Sink(Protocol):
    def publish(self, alert: Alert) -> None: ...

    def dead_letter(self, message: Message, rejected: Rejected) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Summary:
    """What a run did, printed at the end and used by the demo and the tests."""

    messages: int = 0
    points: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    windows_scored: int = 0
    alerts: Counter[str] = field(default_factory=Counter)

    def add(self, messages: int, points: int, outcome: Outcome) -> None:
        self.messages += messages
        self.points += points
        self.windows_scored += outcome.windows
        self.alerts.update(a.status for a in outcome.alerts)

    def line(self) -> str:
        rejected = sum(self.rejected.values())
        return (
            f"messages={self.messages} points={self.points} rejected={rejected} "
            f"windows_scored={self.windows_scored} alerts_firing={self.alerts['firing']} "
            f"alerts_resolved={self.alerts['resolved']}"
        )
