"""The run loop: poll → decode → detect → publish → flush → commit → export.

Sources and sinks are small protocols (`monitor.service.edges`) so the same loop serves Kafka and files. The order
of the last steps is the delivery guarantee: offsets are committed only after the sink has flushed the
alerts and dead letters of the polled records, so a crash anywhere replays records rather than losing them.
With `overlap`, a poll is scored in a thread while the next is read, decoded and windowed; that one is
scored only after the previous one is finished, and offsets and checkpoints are written with nothing in flight.
A poll, commit, flush or restore that fails with a transient error (the broker did not answer) is retried
with backoff while `/readyz` says why; a loop that stops polling shows in `/healthz`. With `checkpoints`,
changed series' state is acknowledged before each commit and restored on assignment (`monitor.service.checkpoint`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter, itemgetter
from typing import overload

import numpy as np

from monitor.engine.columns import Columns
from monitor.engine.detector import Engine, Ready, Routed
from monitor.engine.verdicts import Outcome
from monitor.formats import Decoder, PollDecoder
from monitor.formats.feedback import decode_feedback
from monitor.formats.native import DEFAULT_MAX_BYTES, decode_json
from monitor.logs import CLIENT_LOGS, event
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health
from monitor.observability.state_metrics import StateMetrics
from monitor.records import Alert, Feedback, Message, Point, Rejected, format_ts
from monitor.service.checkpoint import Checkpoints
from monitor.service.edges import Sink, Source, Summary, Task

log = logging.getLogger(__name__)

_FIRST, _VALUE, _TIMESTAMP, _TOPIC = itemgetter(0), attrgetter("value"), attrgetter("timestamp"), attrgetter("topic")

BACKOFF_S = (0.5, 30.0)
"""First and longest wait after the broker did not answer; it doubles in between."""


@dataclass(slots=True)
class _TakenIn:
    """A poll decoded, routed and windowed: its due windows wait to be scored (`Service._submit`)."""

    messages: list[Message]
    points: Sequence[Routed]
    ready: Ready
    feedback: list[tuple[Feedback, float]]
    """Verdicts from the feedback topic and when they were given, applied once the scoring is done."""


@dataclass(slots=True)
class _Started:
    """A poll taken in and handed to the scoring, which may still run in the scoring thread."""

    messages: list[Message]
    points: Sequence[Routed]
    scoring: list[Future[Outcome]]
    feedback: list[tuple[Feedback, float]]


class _RoutedLater(Sequence[Routed]):
    """A poll in columns as the point-by-point path hands its points on (`Columns.routed`), built only if
    something reads them: scheduled retraining does, the other tasks and the counts do not."""

    def __init__(self, columns: Columns) -> None:
        self._columns = columns
        self._routed: list[Routed] | None = None

    def __len__(self) -> int:
        return len(self._columns.series)

    @overload
    def __getitem__(self, index: int) -> Routed: ...

    @overload
    def __getitem__(self, index: slice) -> list[Routed]: ...

    def __getitem__(self, index: int | slice) -> Routed | list[Routed]:
        if self._routed is None:
            self._routed = self._columns.routed()
        return self._routed[index]


class Service:
    def __init__(
        self,
        engine: Engine,
        source: Source,
        sink: Sink,
        exporter: Exporter,
        health: Health,
        decode: Decoder = decode_json,
        decode_poll: PollDecoder | None = None,
        transient: tuple[type[Exception], ...] = (),
        tasks: Sequence[Task] = (),
        checkpoints: Checkpoints | None = None,
        overlap: bool = False,
        commit_interval_s: float = 1.0,
        feedback_topic: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.engine, self.source, self.sink = engine, source, sink
        self.checkpoints = checkpoints
        self.state_metrics = StateMetrics(exporter.registry)
        self.tasks = tuple(tasks)
        """Run in the loop thread after every step: model reloads, scheduled retraining."""
        self.exporter, self.health = exporter, health
        self.decode, self.decode_poll = decode, decode_poll
        """A message's decoder, and the same format's for a whole poll of common messages (None: none)."""
        self.feedback_topic, self.max_message_bytes = feedback_topic, max_message_bytes
        self.transient = transient
        """The source's errors that mean "the broker did not answer": retried, never fatal."""
        self.summary = Summary()
        self.stop = threading.Event()
        self._dropped_seen: Counter[str] = Counter()
        self._failures = 0
        self._outage_since: float | None = None
        self._outage_attempts = 0
        self._scoring = ThreadPoolExecutor(1, "scoring") if overlap else None
        self.commit_interval_s = commit_interval_s
        """With `overlap` and no checkpoints: the longest time between offset commits."""
        self._pending: _Started | None = None
        self._spent: _Started | None = None
        """The poll finished last, kept until the next `_finish` waits for its scores: freeing a poll's
        thousands of objects costs the loop thread 0.5 us a point, which then overlaps the scoring."""
        self._uncommitted = False
        self._last_commit = time.monotonic()

    def run(self, duration_s: float | None = None) -> Summary:
        """Loop until stopped (signal, duration, or a finite source running out), then flush and commit."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        why = "stop requested"
        try:
            while not self.stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    why = "duration reached"
                    break
                try:
                    messages = self.source.poll()
                except self.transient as exc:
                    self._unanswered("poll", exc)
                    continue
                self._polled()
                early = self._take_in_early(messages)
                if self._pending is not None:
                    self._finish(self._pending)  # its scoring ran while the poll was read (and taken in)
                    self._spent, self._pending = self._pending, None
                if messages is None:
                    why = "input exhausted"
                    break
                settle = self._scoring is None or self._settle_due()
                if early is None and settle and self.checkpoints is not None:
                    self._until_done("restore", self._sync)
                started = self._submit(early if early is not None else self._window(messages))
                if settle:  # offsets and state are written with nothing in flight
                    self._finish(started)
                    self._settle()
                else:
                    self._pending = started
            event(log, "stopping", reason=why)
            if self._pending is not None:
                self._finish(self._pending)
                self._pending = None
            self._settle(final=True)
        finally:
            self._answered()
            self.sink.flush()
            self.source.close()
            self.sink.close()
            if self.checkpoints is not None:
                self.checkpoints.close()
            if self._scoring is not None:
                self._scoring.shutdown(cancel_futures=True)
        s = self.summary
        event(
            log,
            "stopped",
            messages=s.messages,
            points=s.points,
            rejected=sum(s.rejected.values()),
            windows_scored=s.windows_scored,
            alerts_firing=s.alerts["firing"],
            alerts_resolved=s.alerts["resolved"],
        )
        return self.summary

    def step(self, messages: list[Message]) -> None:
        """Process one polled batch completely, up to the commit (or the checkpoint, when due)."""
        self._finish(self._submit(self._window(messages)))
        self._settle()

    def _take_in_early(self, messages: list[Message] | None) -> _TakenIn | None:
        """With a poll in flight, the next one decoded, routed and windowed while the scoring thread still
        scores the first (the forward passes leave the interpreter lock free); None when it must wait.

        Only its scoring waits for the poll in flight to be finished: feedback verdicts, model reloads and
        other tasks still act between two scorings. Windowing early changes nothing about the windows in
        flight (copies). It waits for partitions that moved: their state is restored before their records
        are taken in (`_sync`), and checkpoints are only written once both polls are finished."""
        if self._pending is None or not messages:
            return None
        if self.checkpoints is not None and self.checkpoints.rebalancing:
            return None
        return self._window(messages)

    def _window(self, messages: list[Message]) -> _TakenIn:
        feedback = [m for m in messages if m.topic == self.feedback_topic]
        metrics = [m for m in messages if m.topic != self.feedback_topic] if feedback else messages
        points, columns = self._take_in(metrics)
        ready = self.engine.window_columns(columns) if columns is not None else self.engine.window(points)
        return _TakenIn(messages, points, ready, self._verdicts(feedback))

    def _submit(self, taken: _TakenIn) -> _Started:
        return _Started(taken.messages, taken.points, self.engine.score(taken.ready, self._scoring), taken.feedback)

    def _finish(self, started: _Started) -> None:
        """Publish what the scoring of a poll found; offsets wait for `_settle`. Without checkpoints the
        sink is flushed here, since a commit may follow; with them the checkpoint flushes before it
        commits, so a poll's alerts are not waited for one by one (sent at once all the same)."""
        self._spent = None
        outcome = self.engine.finish(started.scoring)
        outcome.alerts.extend(self._judge(started.feedback))
        if log.isEnabledFor(logging.DEBUG):  # which replica scored which window, for fault tests and audits
            for v in outcome.verdicts:
                event(log, "scored", logging.DEBUG, detector=v.detector, series=v.series, end=format_ts(v.ts))
        for alert in outcome.alerts:
            self.sink.publish(alert)
            event(
                log,
                "alert",
                status=alert.status,
                detector=alert.detector,
                series=alert.series,
                alert_id=alert.alert_id,
                started_at=format_ts(alert.started_at),
                score=alert.score,
                threshold=alert.threshold,
                severity=alert.severity,
                model_version=alert.model_version,
            )
        if self.checkpoints is None:
            self._until_done("flush", self.sink.flush)
        if started.messages:
            if self.checkpoints is not None:
                self.checkpoints.processed(outcome.evicted)  # its `pending` says what is uncommitted
            else:
                self._uncommitted = True
        self._observe(started.messages, started.points, outcome)
        for task in self.tasks:
            task.after_step(started.points, outcome)

    def _settle_due(self) -> bool:
        """Whether the next poll is processed with nothing in flight, so offsets (and state) can be written
        after it: checkpoint or commit interval reached, or partitions moved."""
        if self.checkpoints is not None:
            return self.checkpoints.due() or self.checkpoints.rebalancing
        return self._uncommitted and time.monotonic() - self._last_commit >= self.commit_interval_s

    def _settle(self, final: bool = False) -> None:
        """Commit what is processed: every step without overlap, else when due; with checkpoints, after
        writing the state (every checkpoint interval, and at the end)."""
        if self.checkpoints is not None:
            if self.checkpoints.pending and (final or self.checkpoints.due()):
                self._checkpoint(final)
        elif self._uncommitted and (final or self._scoring is None or self._settle_due()):
            self._commit()

    def _polled(self) -> None:
        self._failures = 0
        self.health.polled()
        self.health.check("broker", True)
        self.health.check("partitions", self.source.assigned(), "no partitions assigned")
        self.exporter.last_poll.set_to_current_time()

    def _commit(self, limits: Mapping[int, int] | None = None) -> bool:
        """A failed commit is retried by the next one, which covers these records too (at-least-once)."""
        try:
            self.source.commit(limits)
        except self.transient as exc:
            self._unanswered("commit", exc)
            return False
        self.exporter.last_commit.set_to_current_time()
        self._answered()
        self._uncommitted = False
        self._last_commit = time.monotonic()
        return True

    def _checkpoint(self, final: bool = False) -> None:
        """State first, then offsets, no further than the first record some series' written state lacks:
        the changelog is never behind the committed offsets. A final one writes every changed series."""
        assert self.checkpoints is not None
        self.checkpoints.write(everything=final)
        self._until_done("checkpoint", self.sink.flush)
        if self._commit(self.checkpoints.replay_from()):
            self.checkpoints.committed()

    def _until_done(self, operation: str, action: Callable[[], object]) -> None:
        """Repeat `action` through transient errors: nothing of this step is committed yet, so waiting for
        the broker loses nothing. A stop request while it is away ends the run with the error."""
        while True:
            try:
                action()
                return
            except self.transient as exc:
                if self.stop.is_set():
                    raise
                self._unanswered(operation, exc)
                self.health.polled()  # waiting for the broker is the loop doing its job, not a stuck loop

    def _sync(self) -> None:
        """Rebalance the engine's state; the gauges of series now owned by another replica go."""
        assert self.checkpoints is not None
        moved = self.checkpoints.rebalancing
        released = self.checkpoints.sync()
        if released:
            self.exporter.observe_outcome(Outcome(evicted=released))
        if moved:
            self._export_precision()  # restored verdicts count as soon as they are back

    def _unanswered(self, operation: str, exc: Exception) -> None:
        """Not ready until the broker answers again; back off so a dead broker is not hammered."""
        self._failures += 1
        self._outage_attempts += 1
        self.health.check("broker", False, f"{operation} failed: {type(exc).__name__}: {exc}")
        if self._outage_since is None:  # one warning per outage; the client library's flood is held back
            self._outage_since = time.monotonic()
            CLIENT_LOGS.hold()
            event(log, "broker_error", logging.WARNING, operation=operation, error=str(exc))
        else:
            event(log, "broker_error", logging.DEBUG, operation=operation, error=str(exc), attempt=self._failures)
        first, longest = BACKOFF_S
        self.stop.wait(min(first * 2 ** (self._failures - 1), longest))

    def _answered(self) -> None:
        """The broker answered (a commit went through) or the run ends: an outage, noticed by the loop or
        only by the client library (which starts holding its flood at its first error), is over; one line
        says what it cost. Polled records prove nothing: both clients hand out what they fetched before the
        outage, and a commit that fails once the broker is back (a group that dropped the member) is part
        of the same outage."""
        since = CLIENT_LOGS.holding_since()
        if since is None and self._outage_since is None:
            return
        held, first = CLIENT_LOGS.release()
        if not held and self._outage_since is None:
            return  # one error of the client, and no outage after it: it was shown, nothing to add
        started = min(t for t in (since, self._outage_since) if t is not None)
        seconds = round(time.monotonic() - started, 1)
        event(log, "broker_back", seconds=seconds, attempts=self._outage_attempts, client_errors=held, first=first)
        self._outage_since, self._outage_attempts = None, 0

    def _take_in(self, messages: list[Message]) -> tuple[Sequence[Routed], Columns | None]:
        """A poll's usable points, routed, and the same as columns when the poll allows (`_columns`). A poll
        of common messages is decoded whole (`decode_poll`), else message by message."""
        whole = None if self.decode_poll is None else self.decode_poll(list(map(_VALUE, messages)))
        if whole is not None:
            columns = self._admitted(messages, self.engine.columns(whole))
            if columns is not None:
                self._accepted(Counter(map(_TOPIC, messages)))
                return _RoutedLater(columns), columns
            decoded: list[list[Point] | Rejected] = [[point] for point in whole.points()]
        else:
            decoded = list(map(self.decode, map(_VALUE, messages), map(_TIMESTAMP, messages)))
            columns = self._columns(messages, decoded)
            if columns is not None:
                return _RoutedLater(columns), columns
        return self._decode(messages, decoded), None

    def _columns(self, messages: list[Message], decoded: list[list[Point] | Rejected]) -> Columns | None:
        """The poll as columns (`Engine.columns`), less the points the checkpoint already holds, when every
        message that decoded gave one point and nothing else calls for the checks of `_decode`; the
        messages that did not decode are rejected here then."""
        good, points = messages, decoded
        try:
            lengths = list(map(len, decoded))
        except TypeError:  # a `Rejected` (it has no length): the poll without the messages that did not decode
            usable = [type(d) is not Rejected for d in decoded]
            good, points = list(compress(messages, usable)), list(compress(decoded, usable))
            lengths = list(map(len, points))
        rejected = points is not decoded
        if lengths.count(1) != len(lengths):
            return None
        columns = self._admitted(good, self.engine.columns(list(map(_FIRST, points))))  # type: ignore[arg-type]
        if columns is None:
            return None
        for message, refused in zip(messages, decoded, strict=True) if rejected else ():
            if isinstance(refused, Rejected):
                self._reject(message, refused)
        self._accepted(Counter(map(_TOPIC, good)))
        return columns

    def _admitted(self, messages: list[Message], columns: Columns | None) -> Columns | None:
        """`columns` less the points the checkpoint already holds; None when the checkpoint needs to see
        the points one by one (`Checkpoints.admit_columns`)."""
        if columns is None or self.checkpoints is None:
            return columns
        kept = self.checkpoints.admit_columns(messages, columns)
        return None if kept is None else columns.keep(kept)

    def _decode(self, messages: list[Message], decoded_messages: list[list[Point] | Rejected]) -> list[Routed]:
        """The usable points of a poll, each with its detector (looked up once, here); a message that does
        not decode, or one of whose points its detector cannot use, is rejected whole. Once per record, so
        its steps are bound to locals."""
        points: list[Routed] = []
        ok: Counter[str] = Counter()
        route = self.engine.owner
        admit = None if self.checkpoints is None else self.checkpoints.admit
        for message, decoded in zip(messages, decoded_messages, strict=True):
            routed: list[Routed] = []
            if not isinstance(decoded, Rejected):
                for point in decoded:
                    detector = route(point.series, point.labels)
                    if detector is not None and (refused := detector.refuse(point)) is not None:
                        decoded = refused
                        break
                    routed.append((point, detector))
            if isinstance(decoded, Rejected):
                self._reject(message, decoded)
            else:
                points.extend(routed if admit is None else admit(message, routed))
                ok[message.topic] += 1
        self._accepted(ok)
        return points

    def _accepted(self, topics: Counter[str]) -> None:
        """Count the messages of a poll that decoded and were used, by topic."""
        for topic, count in topics.items():
            self.exporter.messages.labels(topic, "ok").inc(count)

    def _verdicts(self, messages: list[Message]) -> list[tuple[Feedback, float]]:
        """Decode feedback records; bad ones are counted and dead-lettered like bad metrics."""
        verdicts = []
        for message in messages:
            decoded = decode_feedback(message.value, message.key, self.max_message_bytes)
            if isinstance(decoded, Rejected):
                self._reject(message, decoded)
            else:
                verdicts.append((decoded, message.timestamp or time.time()))
                self.exporter.messages.labels(message.topic, "ok").inc()
        return verdicts

    def _judge(self, verdicts: list[tuple[Feedback, float]]) -> list[Alert]:
        """Hand each verdict to the detector of its series (in the loop thread, with no scoring in flight);
        returns the alerts it dismissed, to be published like any resolution."""
        dismissed = []
        for feedback, at in verdicts:
            detector = self.engine.owner(feedback.series)
            if detector is None:
                event(log, "feedback_ignored", logging.WARNING, series=feedback.series, alert_id=feedback.alert_id)
                continue
            new, alert = detector.judge(feedback, at)
            if not new:
                continue  # replayed after a restart: already counted
            name = detector.settings.name
            self.exporter.feedback.labels(name, feedback.verdict).inc()
            self._export_precision()
            if self.checkpoints is not None:
                self.checkpoints.touched(feedback.series)
            event(log, "feedback", detector=name, series=feedback.series, alert_id=feedback.alert_id,
                  verdict=feedback.verdict, by=feedback.by, dismissed=alert is not None)  # fmt: skip
            dismissed += [alert] if alert is not None else []
        return dismissed

    def _export_precision(self) -> None:
        """Each detector's share of confirmed alerts among its latest verdicts (new ones, or restored)."""
        for detector in self.engine.detectors:
            precision = detector.feedback.precision()
            if precision is not None:
                self.exporter.precision.labels(detector.settings.name).set(precision)

    def _reject(self, message: Message, rejected: Rejected) -> None:
        self.summary.rejected[rejected.reason] += 1
        self.exporter.messages.labels(message.topic, rejected.reason).inc()
        event(
            log,
            "rejected",
            logging.WARNING,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=rejected.reason,
            detail=rejected.detail,
        )
        self.sink.dead_letter(message, rejected)

    def _observe(self, messages: list[Message], points: Sequence[Routed], outcome: Outcome) -> None:
        self.summary.add(len(messages), len(points), outcome)
        e = self.exporter
        e.observe_outcome(outcome)
        for detector, seconds in outcome.scoring_seconds.items():
            e.scoring.labels(detector).observe(seconds)
        stamps = np.array(list(map(_TIMESTAMP, messages)), dtype=float)  # a record without one: NaN
        e.latency.observe_many(np.maximum(time.time() - stamps[~np.isnan(stamps)], 0.0))
        e.set_lag(self.source.lag())
        for detector in self.engine.detectors:
            e.tracked.labels(detector.settings.name).set(len(detector.windows))
            e.warming_up.labels(detector.settings.name).set(detector.warming_up())
        dropped = self.engine.dropped()
        if self.checkpoints is not None:
            dropped["replayed"] = self.checkpoints.counts["replayed"]
        for reason, count in (dropped - self._dropped_seen).items():
            e.points_dropped.labels(reason).inc(count)
        self._dropped_seen = dropped
        self.state_metrics.observe(self.engine.adjusted(), self.checkpoints.counts if self.checkpoints else {})
