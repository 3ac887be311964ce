"""Housekeeping for a run that lasts months: the collector's settings and the interpreter's switch interval,
set once the daemon is built and undone when it is released, and the C heap's free pages given back to the
system now and then."""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import time
from collections.abc import Callable, Sequence

from monitor.engine.detector import Routed
from monitor.engine.verdicts import Outcome

GC_THRESHOLDS = (50_000, 10, 10)
"""The collector's thresholds while the loop runs. At Python's default (700) a young pass ran every ~70
points and found the objects of the poll in flight still alive, so they reached the oldest generation and
triggered a full pass, over every series' state, every few polls: 6 of 165 s at 100,000 series in
`bench/loop_cost.py`. A poll's objects die in the poll; 50,000 net new objects between passes are rare."""

SWITCH_INTERVAL_S = 0.001
"""How long a thread runs Python before the interpreter hands the lock to a thread that waits for it
(Python's default: 5 ms). The scoring thread and the forward passes give the lock up at every call that
runs without it (a forward pass, a wait for a chunk) and need it back after; while the run loop decodes
the next poll, each take-back waited up to the whole interval. At stride 4 through the broker
(docs/performance.md) 1 ms gave 69,099, 70,324 and 72,235 points/s against 62,564, 65,759 and 61,822 at
5 ms, alternated; stride 1 the same within noise."""

TRIM_INTERVAL_S = 60.0
"""How often the C heap's free pages go back to the system."""

log = logging.getLogger(__name__)


def settle_for_a_long_run() -> Callable[[], None]:
    """Freeze what is built so far out of the collector's passes, raise its thresholds and shorten the
    switch interval; returns what restores them."""
    # What is built so far (modules, models, clients: some 400k objects with torch) lives as long as the run:
    # kept out of the collector's full passes, which would walk all of it every few seconds at full load.
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    def restore() -> None:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        sys.setswitchinterval(switch)

    return restore


class HeapTrim:
    """A task of the loop: every `interval_s`, between polls, glibc's `malloc_trim` hands the free pages inside
    the C heap back to the system.

    glibc keeps a freed block of the heap for reuse, and gives its pages back only from the heap's top; the
    arrays of each poll, of a different size each time, leave free blocks inside it. It was built against a
    creep that turned out to be oneDNN's code per batch shape (`monitor.models.inference.ROW_QUANTUM`); since
    that fix a 20-minute `bench/fleet.py` run is as flat without the trim (825.0 MiB from the 13th minute) as
    with it (824.0 to 826.7), which gives back a few MiB when the input stops, for about a millisecond a
    minute. Nothing happens where the C library is not glibc."""

    def __init__(self, interval_s: float = TRIM_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s, self.clock = interval_s, clock
        self._trim = _malloc_trim()
        self._next = clock() + interval_s

    def after_step(self, points: Sequence[Routed], outcome: Outcome) -> None:
        now = self.clock()
        if self._trim is None or now < self._next:
            return
        self._next = now + self.interval_s
        started = time.perf_counter()
        released = self._trim(0)
        log.debug("heap trimmed in %.1f ms, pages released: %s", 1e3 * (time.perf_counter() - started), bool(released))


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None (musl and others have none)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return trim
