"""Engine state that survives restarts and partition moves: a changelog in pages of series, as Kafka Streams keeps one.

Every series' state (window buffer, threshold statistics, alert state, what the scorer learned about it)
is written to a compacted topic, into the partition with the number of the metrics partition the series
comes from, with the offset after the last record whose points are in it. The
service keeps one rule: the offset committed for a partition is never past the first record whose points
some series' acknowledged state lacks. So a restart, resuming there, rebuilds every series from its last
written state and the records after it; the changelog is never behind the committed offsets.

A series' state is written at most every `max_replay_s`, not at every checkpoint: the changed series are
queued oldest first, and each checkpoint (every `interval_s`) writes the share of them that spreads a round
of writes over `max_replay_s`, plus any series changed longer ago than that. So the bytes written follow
the points a series gets per `max_replay_s`, not the number of series, and a crash or a moved partition
replays at most about `max_replay_s` of input. A clean stop writes every changed series, so a restart
replays nothing; `max_replay_s: 0` writes every changed series at every checkpoint.

The states are written in pages: a series belongs to page `crc32(series) mod pages` of its partition
(`checkpoint.pages`, 1,024 by default), the page's key, and a page is always written whole, every series
of it in one record. So the records written, each a fixed cost in the Kafka client and the broker
whatever its size, follow the pages that changed rather than the series: at 100,000 series on 4
partitions a page holds about 24 series. A series written takes its page-mates along: where few series
of a page change, more bytes are written than one record per series would. A page left empty (its series
evicted, moved or released by a clean rewrite) gets a tombstone. Restoring reads records of the first
schema (one series each, keyed by the series) as well, rewrites their series into pages, and then
tombstones them, as it does records under keys of another page count.

On assignment the partitions' changelog is read back and each series restored before any record of them
is scored. Consumption resumes at the committed offset; a replayed record whose points a restored series
already holds (its offset is below the series' checkpoint offset) is skipped and counted as `replayed`.
Records after the checkpoint are scored again, so the alerts they raise repeat with the same `alert_id`
(at-least-once), and no window is scored twice into the statistics.

Rebalances follow kafka-python's eager protocol: `on_assigned` gets the whole new assignment, and the
consumer keeps its position in partitions it keeps. So the state of a kept partition stays in memory (it
matches that position), a partition lost (moved away, or the membership lost) is forgotten, and one
gained is restored (its position starts at the committed offset). An evicted series' page is rewritten
without it at the next checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

import numpy as np

from monitor.engine.columns import Columns, first_and_last
from monitor.engine.detector import Detector, Engine, Routed
from monitor.logs import event
from monitor.records import Message
from monitor.service.checkpoint_codec import StateRecord, decode_page, encode_page

log = logging.getLogger(__name__)

_PARTITION, _OFFSET, _NEXT_OFFSET = attrgetter("partition"), attrgetter("offset"), attrgetter("next_offset")
PAGES = 1024
"""Pages a partition's states are spread over (`checkpoint.pages`)."""

Page = tuple[int, bytes]
"""A changelog partition and a page's key in it."""
LARGE_PAGE_BYTES = 768 * 1024
"""A page this large is three quarters of the way to the 1 MB a record may be by default (the broker's
`max.message.bytes`, kafka-python's `max_request_size`): said once, while more pages still help."""


class Changelog(Protocol):
    """Where checkpoints go: one record per page of series, compacted, co-partitioned with the metrics topic."""

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue one record (None: a tombstone); the sink's `flush` acknowledges it."""
        ...

    def read(self, partitions: Collection[int]) -> Iterable[tuple[int, bytes, bytes | None]]:
        """Every record of these partitions from the start to the current end, in log order."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Origin:
    """Where a series' points come from, the offset after the last record already in its state, and the
    detector that owns it."""

    partition: int
    next_offset: int
    detector: Detector
    dirty: bool = False
    """Its written state lacks points: queued in `Checkpoints._dirty_in` under `partition`."""


class Checkpoints:
    """Tracks which series changed, writes their state before a commit, and restores it on assignment.

    The rebalance callbacks only note the partitions; `sync` acts on them from the run loop, before the
    records of the same poll are processed, so state is never touched while a step is half done.
    """

    def __init__(
        self,
        engine: Engine,
        changelog: Changelog,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_replay_s: float = 0.0,
        pages: int = PAGES,
    ) -> None:
        self.engine, self.changelog = engine, changelog
        self.interval_s, self.clock, self.max_replay_s = interval_s, clock, max_replay_s
        self.pages = pages
        self.counts: Counter[str] = Counter()
        """written (series states), pages (records), tombstones, restored (series), incompatible (changelog
        records not usable), replayed (points)."""
        self._processed = False
        """Records were processed since the last commit."""
        self._last = self._last_write = clock()
        self._origins: dict[str, _Origin] = {}
        self._dirty_in: dict[int, dict[str, int]] = {}
        """Series (or entities) whose written state lacks points (their origin is `dirty`), by partition, in
        record order, with the offset of the first record they lack: the first one of a partition is where
        its replay starts (found without walking the others' series)."""
        self._dirty_pages: dict[Page, float] = {}
        """The pages of those series, oldest first: when the first of their unwritten points came."""
        self._urgent: set[str] = set()
        """Series changed by something that is not a record of their own (a verdict on their alert), or
        restored from a record that is not their page's: written at the next checkpoint, before the offsets
        of what changed them are committed."""
        self._members: dict[Page, set[str]] = {}
        """The tracked series of each page."""
        self._warned_large = False
        """A `checkpoint_page_large` warning was logged: it is said once."""
        self._rewrite: dict[Page, None] = {}
        """Pages to write at the next checkpoint whatever their series: one lost a series (evicted, moved
        to another partition), or a key read on restore that is not (or no longer only) a page's."""
        self._evicted: list[tuple[str, str]] = []
        self._held: set[int] = set()
        """Partitions whose state is in memory and matches the consumer's position."""
        self._lost: set[int] = set()
        self._gained: set[int] = set()
        self._released: list[tuple[str, str]] = []

    def on_revoked(self, partitions: Collection[int]) -> None:
        """Eager protocol: only announces a new assignment; what it takes away shows in `on_assigned`."""

    def on_assigned(self, partitions: Collection[int]) -> None:
        assigned = set(partitions)
        self._drop(self._held - assigned)
        self._gained |= assigned - self._held
        self._held = assigned

    def on_lost(self, partitions: Collection[int]) -> None:
        """The group dropped this member (its session expired): others may have processed these since."""
        self._drop(set(partitions) & self._held)
        self._held -= set(partitions)

    def _drop(self, partitions: set[int]) -> None:
        self._lost |= partitions
        self._gained -= partitions

    def sync(self) -> list[tuple[str, str]]:
        """Forget the series of lost partitions, restore those of gained ones; returns the (detector,
        series) pairs let go, so observers can drop them too. Restoring reads the changelog: if that
        fails the assignment stays pending and the next call tries again."""
        if self._lost:  # a walk over every tracked series: 5 ms at 100,000, at every checkpoint otherwise
            self._released += self._release(self._lost)
            self._lost.clear()
        if self._gained:
            restored = self._restore(self._gained)
            event(log, "state_restored", partitions=sorted(self._gained), series=restored)
            self._gained.clear()
        released, self._released = self._released, []
        return released

    def processed(self, evicted: Iterable[tuple[str, str]]) -> None:
        """A step processed records (whose series `admit` marked) and evicted these (detector, series)."""
        self._processed = True
        self._evicted.extend(evicted)

    @property
    def pending(self) -> bool:
        """Records were processed since the last commit, or some series' state is not written yet."""
        changed = any(self._dirty_in.values()) or bool(self._evicted or self._urgent or self._rewrite)
        return self._processed or changed

    @property
    def rebalancing(self) -> bool:
        """Partitions were gained or lost and `sync` has not acted on it yet."""
        return bool(self._gained or self._lost)

    def due(self) -> bool:
        return self.pending and self.clock() - self._last >= self.interval_s

    def committed(self) -> None:
        """The offsets of everything processed are committed, after a `write` the sink acknowledged."""
        self._processed = False
        self._last = self.clock()

    def close(self) -> None:
        self.changelog.close()

    def admit(self, message: Message, points: list[Routed]) -> list[Routed]:
        """The routed points of `message` that are not already in their series' (or entity's) restored
        state; marks the rest changed, to be written by the next `write`."""
        kept = []
        for routed in points:
            point, detector = routed
            if detector is None:
                kept.append(routed)
                continue
            key = point.series if detector.entities is None else detector.entities.entity_of(point)
            origin = self._origins.get(key)
            if origin is not None and origin.partition == message.partition:
                if message.offset < origin.next_offset:
                    self.counts["replayed"] += 1  # already in the restored state
                    continue
                origin.next_offset = message.offset + 1  # the usual case: the series' next record
            else:
                origin = self._track(key, detector, message)
            if not origin.dirty:
                self._mark(key, origin, self.clock(), message)
            kept.append(routed)
        return kept

    def admit_columns(self, messages: list[Message], columns: Columns) -> np.ndarray | None:
        """`admit` for a poll in columns (`columns.points[i]` is the one point of `messages[i]`): which
        points to keep. None, with nothing changed, when a series is new here or came from another
        partition, or a partition's records are out of offset order: `admit` then takes them one by one."""
        keys, at = columns.keys(), columns.owned()
        if at is None:
            return self._admit_owned(messages, columns.series, keys)
        chosen = at.tolist()  # points no detector wants are kept, as `admit` keeps them
        owned = self._admit_owned(
            list(map(messages.__getitem__, chosen)), list(map(columns.series.__getitem__, chosen)), keys[at]
        )
        if owned is None:
            return None
        kept = np.ones(len(messages), dtype=bool)
        kept[at] = owned
        return kept

    def _admit_owned(self, messages: list[Message], series: list[str], keys: np.ndarray) -> np.ndarray | None:
        """`admit_columns` for points that all have a detector."""
        origins = list(map(self._origins.get, series))
        if not all(origins):
            return None
        n = len(origins)
        partition = np.fromiter(map(_PARTITION, messages), np.int64, n)
        offset = np.fromiter(map(_OFFSET, messages), np.int64, n)
        came_from = np.fromiter(map(_PARTITION, origins), np.int64, n)
        if not (np.array_equal(partition, came_from) and _ascending(partition, offset)):
            return None
        kept = offset >= np.fromiter(map(_NEXT_OFFSET, origins), np.int64, n)  # below: in the restored state
        if not kept.all():
            self.counts["replayed"] += n - int(kept.sum())
        at = np.flatnonzero(kept)
        first, last = (at[i] for i in first_and_last(keys[at]))
        for i, after in zip(last.tolist(), (offset[last] + 1).tolist(), strict=True):
            origins[i].next_offset = after  # type: ignore[union-attr] (all are origins)
        now = None
        for i in first.tolist():
            if not origins[i].dirty:  # type: ignore[union-attr] (all are origins)
                now = self.clock() if now is None else now
                self._mark(series[i], origins[i], now, messages[i])  # type: ignore[arg-type]
        return kept

    def _mark(self, key: str, origin: _Origin, since: float, message: Message) -> None:
        """The series' written state now lacks the points of `message` (its first such record): queue it."""
        origin.dirty = True
        self._dirty_in.setdefault(message.partition, {})[key] = message.offset
        self._dirty_pages.setdefault(self._page(key, message.partition), since)

    def _track(self, key: str, detector: Detector, message: Message) -> _Origin:
        """Start following a series or entity (first point, or re-keyed to another partition). An entity's
        series must share one partition (key them by the entity), as a series' points must."""
        origin = self._origins.get(key)
        if origin is not None:
            self._leave(key, origin.partition)  # the producer re-keyed the series
            self._clean(key, origin)  # its unsaved points are replayed from the new partition
        origin = self._origins[key] = _Origin(message.partition, message.offset + 1, detector)
        self._members.setdefault(self._page(key, message.partition), set()).add(key)
        return origin

    def touched(self, series: str) -> None:
        """Something besides a record of its own changed the series' state (a verdict on its alert)."""
        if series in self._origins:
            self._urgent.add(series)

    def write(self, everything: bool = False) -> int:
        """Queue the pages of the changed series that are due (all of them with `everything`: a clean
        stop) and of evicted ones; the caller flushes the sink, then commits no further than
        `replay_from`. Returns how many records were queued."""
        for _, series in self._evicted:
            origin = self._origins.pop(series, None)
            self._urgent.discard(series)
            if origin is not None:
                self._clean(series, origin)
                self._leave(series, origin.partition)
        self._evicted.clear()
        pages = dict.fromkeys(self._page(series, self._origins[series].partition) for series in self._urgent)
        pages.update(dict.fromkeys(self._due(everything)))
        pages.update(self._rewrite)  # after the pages the series restored from these keys are written to
        for page in pages:
            self._write_page(page)
        self._urgent.clear()
        self._rewrite.clear()
        return len(pages)

    def _write_page(self, page: Page) -> None:
        """The state of every series of the page in one record; a tombstone when none is left."""
        self._dirty_pages.pop(page, None)
        records = []
        for series in self._members.get(page, ()):
            origin = self._origins[series]
            self._clean(series, origin)
            state = origin.detector.snapshot(series)
            if state is not None:
                records.append(
                    StateRecord(series, origin.detector.settings.name, origin.partition, origin.next_offset, state)
                )
        partition, key = page
        if records:
            value = encode_page(records)
            if len(value) > LARGE_PAGE_BYTES and not self._warned_large:
                self._warn_large(partition, len(records), len(value))
            self.changelog.write(partition, key, value)
            self.counts["written"] += len(records)
            self.counts["pages"] += 1
        else:
            self._members.pop(page, None)
            self.changelog.write(partition, key, None)
            self.counts["tombstones"] += 1

    def _warn_large(self, partition: int, series: int, size: int) -> None:
        self._warned_large = True
        hint = "raise checkpoint.pages before a page passes 1 MB"
        event(log, "checkpoint_page_large", logging.WARNING, partition=partition, series=series, bytes=size,
              pages=self.pages, hint=hint)  # fmt: skip

    def _page(self, series: str, partition: int) -> Page:
        return partition, b"\x00page/%d" % (zlib.crc32(series.encode()) % self.pages)

    def _leave(self, series: str, partition: int) -> None:
        """The series' state leaves its page: rewritten without it at the next checkpoint."""
        page = self._page(series, partition)
        self._members.get(page, set()).discard(series)
        self._rewrite[page] = None

    def _due(self, everything: bool) -> list[Page]:
        """The pages with changed series to write now, oldest first: a share of them sized so that one
        round of writes spreads over `max_replay_s` (no burst of every page at once), and every page
        changed longer ago than that."""
        now = self.clock()
        elapsed, self._last_write = now - self._last_write, now
        if everything or self.max_replay_s <= 0:
            return list(self._dirty_pages)
        share = math.ceil(len(self._dirty_pages) * elapsed / self.max_replay_s)
        oldest = now - self.max_replay_s
        due = []
        for page, since in self._dirty_pages.items():
            if len(due) >= share and since > oldest:
                break
            due.append(page)
        return due

    def replay_from(self) -> dict[int, int]:
        """Per partition with unwritten points, the offset of the first record that holds some: what a
        restart must re-read, so offsets are committed no further. Series become dirty in record order,
        so the first dirty series of a partition has its lowest offset."""
        return {partition: next(iter(dirty.values())) for partition, dirty in self._dirty_in.items() if dirty}

    def _clean(self, series: str, origin: _Origin) -> None:
        """The series' state is written (or gone): nothing of it waits for a checkpoint any more."""
        if origin.dirty:
            origin.dirty = False
            del self._dirty_in[origin.partition][series]

    def _release(self, partitions: Collection[int]) -> list[tuple[str, str]]:
        released = []
        for page in [page for page in self._members if page[0] in partitions]:
            del self._members[page]
            self._rewrite.pop(page, None)
            self._dirty_pages.pop(page, None)
        for series in [s for s, o in self._origins.items() if o.partition in partitions]:
            origin = self._origins.pop(series)
            self._clean(series, origin)
            self._urgent.discard(series)
            origin.detector.forget(series)
            released.append((origin.detector.settings.name, series))
        return released

    def _restore(self, partitions: Collection[int]) -> int:
        """Apply the last state of each series in the partitions' changelog, decoding only the last record
        of each key (until compaction catches up, a key has a record per round of writes). A state that
        cannot be restored leaves its series to start afresh."""
        latest: dict[Page, bytes | None] = {}
        for partition, key, value in self.changelog.read(partitions):
            latest.pop((partition, key), None)
            latest[(partition, key)] = value
        found: dict[str, tuple[bytes, StateRecord, Page]] = {}
        for (partition, key), value in latest.items():  # in the order of those last records
            if value is None:  # the series of a first-schema key evicted, unless its state moved to a page
                series = key.decode(errors="replace")
                if series in found and found[series][0] == key:
                    del found[series]
                continue
            try:
                records = decode_page(key, value)
            except (ValueError, KeyError, TypeError) as exc:
                self._incompatible(key.decode(errors="replace"), partition, exc)
                continue
            for record in records:
                page = self._page(record.series, partition)
                found.pop(record.series, None)
                found[record.series] = (key, record, page)
                if page[1] != key:  # first schema, or another page count
                    self._rewrite[partition, key] = None  # once its series are in their pages
        restored = sum(self._restore_one(*found_under) for found_under in found.values())
        self.counts["restored"] += restored
        return restored

    def _restore_one(self, key: bytes, record: StateRecord, page: Page) -> bool:
        """Restore one series' state, read under `key`, into `page`; False when it no longer fits."""
        series = record.series
        try:
            detector = next((d for d in self.engine.detectors if d.settings.name == record.detector), None)
            window = record.state["window"]
            labels = window["labels"] if window is not None else _row_labels(detector, series)
            if detector is None or not self.engine.keeps(detector, series, labels):
                raise ValueError(f"series {series!r} is not owned by detector {record.detector!r} any more")
            detector.restore(series, record.state)
        except (ValueError, KeyError, TypeError) as exc:
            self._incompatible(series, record.partition, exc)
            return False
        known = self._origins.get(series)
        if known is not None and known.partition != record.partition:  # as `_track` does for a re-keyed one
            self._leave(series, known.partition)
            self._clean(series, known)
        dirty = known is not None and known.dirty  # its unwritten points, in this partition, stay queued
        self._origins[series] = _Origin(record.partition, record.offset, detector, dirty)
        self._members.setdefault(page, set()).add(series)
        if page[1] != key:  # its key is rewritten (`_restore`) after its page is
            self._urgent.add(series)
        return True

    def _incompatible(self, series: str, partition: int, exc: Exception) -> None:
        self.counts["incompatible"] += 1
        event(log, "checkpoint_skipped", logging.WARNING, series=series, partition=partition, error=str(exc))


def _row_labels(detector: Detector | None, entity: str) -> dict[str, str]:
    """The labels that make an entity whose rows are all still waiting: its `entity_label` only."""
    return {detector.entities.entity_label: entity} if detector is not None and detector.entities else {}


def _ascending(partition: np.ndarray, offset: np.ndarray) -> bool:
    """Whether each partition's records come in rising offset order, as a consumer hands them over (as
    a run per partition, usually: checked without sorting)."""
    turns = partition[1:] != partition[:-1]
    if np.count_nonzero(turns) + 1 == len(np.unique(partition)):  # one run per partition
        return bool((np.diff(offset) > 0)[~turns].all())
    order = np.argsort(partition, kind="stable")
    same = partition[order][1:] == partition[order][:-1]
    return bool((np.diff(offset[order])[same] > 0).all())
