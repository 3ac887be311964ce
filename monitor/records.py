"""The data that flows through the engine, and the wire formats.

Nowhere else in the package knows bytes: input messages are decoded here into `Point`s, and alerts are
encoded here into the JSON contract of DESIGN.md. Decoding never raises on bad input: a message that does
not decode comes back as a `Rejected` value (bad records are data, not exceptions), so the caller can
count it by reason and dead-letter the original bytes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import compress
from typing import Any

import msgspec
import numpy as np
import orjson

ALERT_SCHEMA = "monitor.alert/v1"
FEEDBACK_SCHEMA = "monitor.feedback/v1"
UNIVARIATE = "value"
"""Feature name of a univariate point (`{"value": ...}`)."""

# Timestamps outside this range are almost surely a unit mistake (ms or ns sent as seconds).
MIN_TS = 0.0  # 1970-01-01
MAX_TS = 4102444800.0  # 2100-01-01


class Message(msgspec.Struct, gc=False):
    """One input message as a source hands it over: raw bytes plus where it came from.

    A msgspec struct, like `Point`: one is built per record, and its constructor runs in C (0.2 µs against
    0.4 for a slotted dataclass, docs/performance.md); `gc=False` keeps it out of the cycle collector,
    which it cannot be part of (it holds bytes, strings and numbers). Nothing changes one after it is built."""

    value: bytes
    timestamp: float | None = None
    """The record timestamp in Unix seconds, used when a point has no `ts` of its own."""
    topic: str = "-"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


class Point(msgspec.Struct, gc=False):
    """One observation of one series: a timestamp and one value per feature. A msgspec struct, as
    `Message` is, for the same reason: the decoder builds one per input point; it refers to its dicts
    and strings only, so it is never part of a reference cycle."""

    series: str
    ts: float
    values: Mapping[str, float]
    labels: Mapping[str, str] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PointColumns:
    """A poll's points as columns, one univariate point a message in message order: what the native format
    makes of a poll of common messages (`monitor.formats.native.decode_json_poll`) without a `Point`, a
    dict and a list per message, which the loop thread would build and free again. `points` builds them
    for the steps that take points one by one."""

    series: list[str]
    ts: np.ndarray
    values: np.ndarray
    """The `value` of each point."""
    labels: list[dict[str, str] | None]
    """Each point's labels; None: none given."""

    def __len__(self) -> int:
        return len(self.series)

    def points(self) -> list[Point]:
        """The `Point`s, as decoding the messages one by one gives them."""
        values = [{UNIVARIATE: value} for value in self.values.tolist()]
        return list(map(Point, self.series, self.ts.tolist(), values, [found or {} for found in self.labels]))

    def rows(self, at: np.ndarray, features: tuple[str, ...]) -> np.ndarray | None:
        """The values of the points at `at` as rows in `features` order; None unless the features are the
        univariate one."""
        return self.values[at].reshape(-1, 1) if features == (UNIVARIATE,) else None

    def keep(self, kept: np.ndarray) -> PointColumns:
        """The points where `kept` is True."""
        return PointColumns(
            list(compress(self.series, kept)), self.ts[kept], self.values[kept], list(compress(self.labels, kept))
        )


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that did not decode: `reason` is a short stable label for counting, `detail` is for people."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Window:
    """The last `window` points of one series, ready for scoring. `data` has shape (window, n_features)."""

    series: str
    start_ts: float
    end_ts: float
    data: np.ndarray
    labels: Mapping[str, str]


class WindowBatch:
    """The windows that became due in one poll: one (B, window, features) array plus their series."""

    def __init__(self, window: int, n_features: int) -> None:
        self.series: list[str] = []
        self.labels: list[Mapping[str, str]] = []
        self.start: list[float] = []
        self.end: list[float] = []
        self._data = np.empty((16, window, n_features))

    def __len__(self) -> int:
        return len(self.series)

    @property
    def data(self) -> np.ndarray:
        return self._data[: len(self.series)]

    def add(self, series: str, labels: Mapping[str, str], start: float, end: float, data: np.ndarray) -> None:
        n = len(self.series)
        if n == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[n] = data
        self.series.append(series)
        self.labels.append(labels)
        self.start.append(start)
        self.end.append(end)

    def extend(
        self, series: list[str], labels: list[Mapping[str, str]], start: list[float], end: list[float], data: np.ndarray
    ) -> None:
        """Rows added at once: `data` is (rows, window, features), the rest one entry per row."""
        n = len(self.series) + len(series)
        if n > len(self._data):
            self._data = np.concatenate([self._data, np.empty((n, *self._data.shape[1:]))])
        self._data[len(self.series) : n] = data
        self.series += series
        self.labels += labels
        self.start += start
        self.end += end

    def windows(self) -> list[Window]:
        """One `Window` object per row, for callers that want them (tests, tools); the engine does not."""
        return [
            Window(s, t0, t1, self._data[i].copy(), labels)
            for i, (s, t0, t1, labels) in enumerate(zip(self.series, self.start, self.end, self.labels, strict=True))
        ]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of scoring one window against its series' threshold."""

    detector: str
    series: str
    ts: float
    window_start: float
    score: float
    threshold: float
    anomalous: bool
    warming_up: bool
    labels: Mapping[str, str]
    feature_shares: Mapping[str, float]
    values: Mapping[str, float] = field(default_factory=dict)
    """The newest point of the window per feature: what a dashboard plots next to the score."""
    cooling: bool = False
    """The series is within `alerting.cooldown` of its last alert: it pages only at critical severity."""


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert lifecycle event: status is "firing" or "resolved"; both carry the same `alert_id`."""

    alert_id: str
    status: str
    detector: str
    series: str
    labels: Mapping[str, str]
    model_version: str
    started_at: float
    at: float
    ended_at: float | None
    score: float
    threshold: float
    severity: str
    window_start: float
    window_end: float
    top_features: tuple[tuple[str, float], ...]
    resolution: str | None = None
    """How a resolved alert ended: `normal` (`resolve_after` normal windows) or `dismissed` (a person's
    `false_positive` verdict on the feedback topic); None while firing."""
    resolved_by: str | None = None
    """Who dismissed it (the verdict's `by`), when it was dismissed."""


VERDICTS = ("false_positive", "true_positive")
"""What a person can say about an alert on the feedback topic."""


@dataclass(frozen=True, slots=True)
class Feedback:
    """A person's verdict on one alert (`monitor.feedback/v1`), keyed by the alert's series."""

    alert_id: str
    verdict: str
    series: str
    by: str | None = None
    note: str | None = None


def alert_id(detector: str, series: str, started_at: float) -> str:
    """Deterministic id, so a replay after a crash repeats it and consumers can de-duplicate."""
    key = f"{detector}\x00{series}\x00{format_ts(started_at)}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def format_ts(ts: float) -> str:
    """RFC 3339 in UTC, with milliseconds only when the timestamp has them."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if ts % 1 else "seconds")
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Unix seconds or an RFC 3339 date-time with a zone; ValueError otherwise."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds):
            raise ValueError(f"not a finite time: {text!r}")
        return seconds
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"RFC 3339 needs a zone (Z or +hh:mm), got {text!r}")
    return moment.timestamp()


def encode_alert(alert: Alert) -> bytes:
    """The alert message value, exactly the `monitor.alert/v1` shape of DESIGN.md."""
    return orjson.dumps(alert_to_dict(alert))


def encode_point(point: Point) -> bytes:
    """The native input form of a point (univariate `value` or multivariate `values`)."""
    doc: dict[str, Any] = {"series": point.series, "ts": point.ts}
    if set(point.values) == {UNIVARIATE}:
        doc["value"] = point.values[UNIVARIATE]
    else:
        doc["values"] = dict(point.values)
    if point.labels:
        doc["labels"] = dict(point.labels)
    return orjson.dumps(doc)


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    return {
        "schema": ALERT_SCHEMA,
        "alert_id": alert.alert_id,
        "status": alert.status,
        "detector": alert.detector,
        "series": alert.series,
        "labels": dict(alert.labels),
        "model_version": alert.model_version,
        "started_at": format_ts(alert.started_at),
        "at": format_ts(alert.at),
        "ended_at": None if alert.ended_at is None else format_ts(alert.ended_at),
        "score": round(alert.score, 6),
        "threshold": round(alert.threshold, 6),
        "severity": alert.severity,
        "window": {"start": format_ts(alert.window_start), "end": format_ts(alert.window_end)},
        "top_features": [{"feature": f, "share": round(s, 4)} for f, s in alert.top_features],
        "resolution": alert.resolution,
        "resolved_by": alert.resolved_by,
    }


def encode_feedback(feedback: Feedback) -> bytes:
    """The feedback message value (`monitor.feedback/v1`); the series is the record's key."""
    doc = {"schema": FEEDBACK_SCHEMA, "alert_id": feedback.alert_id, "verdict": feedback.verdict}
    doc.update({k: v for k, v in (("by", feedback.by), ("note", feedback.note)) if v is not None})
    return orjson.dumps(doc)


def is_finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))
