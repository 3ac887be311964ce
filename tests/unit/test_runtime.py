"""The process settings of a long run: the collector's thresholds come back on release, and glibc's mmap
threshold stays where it was put instead of following the largest block freed."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from monitor.service import runtime

ROOT = Path(__file__).resolve().parents[2]


PROBE = """
import ctypes, sys
from monitor.service import runtime

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "settled":
    runtime.settle_for_a_long_run()
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(2 * runtime.MMAP_THRESHOLD)
print(libc.mallinfo2().hblks - before)
"""


def _blocks_mapped_after_a_larger_one_was_freed(mode: str) -> int:
    """In a fresh interpreter, whose heap has no free chunk that large: a test run's heap may have one, and
    glibc serves a large block from free heap space before it maps anything."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return int(result.stdout)


def test_a_block_above_the_threshold_is_still_mapped_after_a_larger_one_was_freed():
    """glibc alone raises its threshold to 4 MiB when the first block is freed, and carves the second out of
    the heap, where it leaves a hole when freed."""
    assert _blocks_mapped_after_a_larger_one_was_freed("default") == 0
    assert _blocks_mapped_after_a_larger_one_was_freed("settled") == 1


def test_the_collector_gets_its_thresholds_back_on_release():
    before = gc.get_threshold()
    restore = runtime.settle_for_a_long_run()
    assert gc.get_threshold() == runtime.GC_THRESHOLDS
    restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_operators_own_threshold_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert runtime.fix_mmap_threshold() is False
