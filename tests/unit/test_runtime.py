"""The housekeeping of a long run: the collector's thresholds and the switch interval come back on release,
and the heap trim hands the free pages inside glibc's heap back to the system, once an interval."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.engine.verdicts import Outcome
from monitor.service import runtime

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import ctypes
from monitor.service.runtime import HeapTrim

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)

def rss() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * 4096

libc.free(libc.malloc(8 << 20))  # glibc now keeps blocks up to 8 MiB in the heap
blocks = []
for _ in range(100):  # 100 blocks of 200 KiB, each held apart by one of 70 KiB that stays (a smaller one
    # could come from a free chunk elsewhere, and let the large ones merge into one that glibc trims at once)
    block = libc.malloc(200 << 10)
    ctypes.memset(block, 1, 200 << 10)
    blocks.append(block)
    libc.malloc(70 << 10)
for block in blocks:
    libc.free(block)
now = [0.0]
trim = HeapTrim(interval_s=60, clock=lambda: now[0])
before = rss()
trim.after_step([], None)
early = rss()
now[0] = 60.0
trim.after_step([], None)
print(before - early, before - rss())
"""


def test_the_trim_gives_back_the_free_holes_in_the_heap_once_the_interval_is_over():
    """In a fresh interpreter, so that what the test run allocated does not fill the holes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    early, due = map(int, result.stdout.split())
    assert early < 2 << 20, "nothing before the interval is over"
    assert due > 15 << 20, "most of the 20 MiB of holes are given back"


def test_the_trim_runs_once_an_interval_between_polls(caplog):
    now = [0.0]
    trim = runtime.HeapTrim(interval_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger=runtime.__name__):
        for t in (30.0, 60.0, 90.0, 119.0, 120.0):
            now[0] = t
            trim.after_step([], Outcome())
    assert [r.getMessage().startswith("heap trimmed") for r in caplog.records] == [True, True]


def test_the_collector_and_the_switch_interval_are_set_back_on_release():
    before, switch = gc.get_threshold(), sys.getswitchinterval()
    restore = runtime.settle_for_a_long_run()
    assert gc.get_threshold() == runtime.GC_THRESHOLDS
    assert sys.getswitchinterval() == pytest.approx(runtime.SWITCH_INTERVAL_S)
    restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert sys.getswitchinterval() == switch
