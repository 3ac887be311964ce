"""The interpreter's and the C heap's settings for a run that lasts months: set once the daemon is built,
undone (where they can be) when it is released."""

from __future__ import annotations

import ctypes
import gc
import logging
import os
from collections.abc import Callable

GC_THRESHOLDS = (50_000, 10, 10)
"""The collector's thresholds while the loop runs. At Python's default (700) a young pass ran every ~70
points and found the objects of the poll in flight still alive, so they reached the oldest generation and
triggered a full pass, over every series' state, every few polls: 6 of 165 s at 100,000 series in
`bench/loop_cost.py`. A poll's objects die in the poll; 50,000 net new objects between passes are rare."""

MMAP_THRESHOLD = 128 * 1024
"""Blocks of the C heap from this size up are mapped on their own and go back to the system when freed.
glibc starts at this size but raises it to the size of every mapped block freed (up to 32 MiB), after which
a poll's arrays, of a different size each time, are carved out of the heap and leave holes it never
returns: resident memory grew 2 to 3 MiB a minute for as long as points came (`bench/fleet.py`, 5,000
series at 5,000 points/s), and stayed flat with the threshold fixed at this, glibc's own starting value."""

M_MMAP_THRESHOLD = -3
"""mallopt's parameter number (malloc.h)."""

log = logging.getLogger(__name__)


def settle_for_a_long_run() -> Callable[[], None]:
    """Freeze what is built so far out of the collector's passes, raise its thresholds, and fix the C heap's
    mmap threshold; returns what restores the collector (the heap's threshold stays: harmless, and glibc
    has no way back to its moving one)."""
    # What is built so far (modules, models, clients: some 400k objects with torch) lives as long as the run:
    # kept out of the collector's full passes, which would walk all of it every few seconds at full load.
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    fix_mmap_threshold()

    def restore() -> None:
        gc.set_threshold(*thresholds)
        gc.unfreeze()

    return restore


def fix_mmap_threshold() -> bool:
    """Set glibc's mmap threshold to MMAP_THRESHOLD, unless the operator set MALLOC_MMAP_THRESHOLD_ (theirs
    wins) or the C library is not glibc (musl has no such threshold); True when it was set."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused: the C library keeps its own threshold")
    return done
