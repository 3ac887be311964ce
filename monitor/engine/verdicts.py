"""What one engine step produced: verdicts as columns (arrays, not one object per window), and the `Outcome`.

At stride 1 a replica judges as many windows as it reads points, so the engine, the exporter and the
alert tracker work on these columns; `Verdict` objects are built only for the few windows that need one
(an alert firing or resolving) and for callers that ask (tests, the evaluation, debug logs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.records import Alert, Verdict


@dataclass(slots=True)
class VerdictBatch:
    """Row i is the verdict on window i of a scoring call; `score`, `threshold`, `anomalous` and
    `warming_up` are filled in by the thresholds after scoring."""

    detector: str
    features: tuple[str, ...]
    series: list[str]
    labels: list[Mapping[str, str]]
    ts: np.ndarray
    """End of each window: the timestamp of its newest point."""
    window_start: np.ndarray
    values: np.ndarray
    """(B, F): the newest point of each window."""
    errors: np.ndarray
    """(B, F): each feature's part of the window's score, for `top_features`."""
    score: np.ndarray
    threshold: np.ndarray
    anomalous: np.ndarray
    warming_up: np.ndarray
    cooling: np.ndarray
    """Filled in by the alert tracker: the series pages only at critical severity (`Verdict.cooling`)."""

    @classmethod
    def empty(
        cls,
        detector: str,
        features: Sequence[str],
        series: list[str],
        labels: list[Mapping[str, str]],
        start: Sequence[float],
        end: Sequence[float],
        values: np.ndarray,
        errors: np.ndarray,
    ) -> VerdictBatch:
        """A batch whose judgement columns are still to be filled in."""
        n = len(series)
        return cls(
            detector, tuple(features), series, labels, np.asarray(end, dtype=float),
            np.asarray(start, dtype=float), values, errors, np.zeros(n), np.zeros(n),
            np.zeros(n, dtype=bool), np.ones(n, dtype=bool), np.zeros(n, dtype=bool),
        )  # fmt: skip

    @classmethod
    def of(cls, verdicts: Sequence[Verdict], features: Sequence[str]) -> VerdictBatch:
        """Columns from `Verdict` objects (tests and tools that build verdicts by hand)."""
        first = verdicts[0]
        return cls(
            first.detector,
            tuple(features),
            [v.series for v in verdicts],
            [v.labels for v in verdicts],
            np.array([v.ts for v in verdicts], dtype=float),
            np.array([v.window_start for v in verdicts], dtype=float),
            np.array([[v.values.get(f, 0.0) for f in features] for v in verdicts], dtype=float),
            np.array([[v.feature_shares.get(f, 0.0) for f in features] for v in verdicts], dtype=float),
            np.array([v.score for v in verdicts], dtype=float),
            np.array([v.threshold for v in verdicts], dtype=float),
            np.array([v.anomalous for v in verdicts], dtype=bool),
            np.array([v.warming_up for v in verdicts], dtype=bool),
            np.array([v.cooling for v in verdicts], dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.series)

    def verdict(self, i: int) -> Verdict:
        errors = self.errors[i]
        total = float(errors.sum())
        return Verdict(
            detector=self.detector,
            series=self.series[i],
            ts=float(self.ts[i]),
            window_start=float(self.window_start[i]),
            score=float(self.score[i]),
            threshold=float(self.threshold[i]),
            anomalous=bool(self.anomalous[i]),
            warming_up=bool(self.warming_up[i]),
            labels=self.labels[i],
            feature_shares={
                f: float(e) / total if total > 0 else 0.0 for f, e in zip(self.features, errors, strict=True)
            },
            values={f: float(v) for f, v in zip(self.features, self.values[i], strict=True)},
            cooling=bool(self.cooling[i]),
        )

    def verdicts(self) -> list[Verdict]:
        return [self.verdict(i) for i in range(len(self))]


@dataclass(slots=True)
class Outcome:
    """What one `process` call produced: verdicts and alerts detector by detector, each in input order."""

    batches: list[VerdictBatch] = field(default_factory=list)
    """The verdicts of each detector's scoring call, as columns."""
    alerts: list[Alert] = field(default_factory=list)
    scoring_seconds: dict[str, float] = field(default_factory=dict)
    """Time of each detector's batched scoring call."""
    evicted: list[tuple[str, str]] = field(default_factory=list)
    """(detector, series) pairs evicted by `max_series`, so observers can drop them too."""

    @property
    def windows(self) -> int:
        """Windows scored."""
        return sum(len(b) for b in self.batches)

    @property
    def verdicts(self) -> list[Verdict]:
        """One `Verdict` object per window (built on demand: the run loop itself uses `batches`)."""
        return [v for b in self.batches for v in b.verdicts()]

    def extend(self, other: Outcome) -> None:
        self.batches.extend(other.batches)
        self.alerts.extend(other.alerts)
        self.scoring_seconds.update(other.scoring_seconds)
        self.evicted.extend(other.evicted)
