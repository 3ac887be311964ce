"""Resource bounds: a stream of ever-new series keeps memory flat at `max_series` (LRU eviction, counted),
and the memory each tracked series costs is measured and printed (`pytest -s` shows it)."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from monitor.engine.alerting import AlertSettings
from monitor.engine.detector import Detector, DetectorSettings, Engine
from monitor.engine.threshold import ThresholdSettings
from monitor.records import Point
from monitor.service.checkpoint_codec import StateRecord, encode_page

from .test_detector import FakeScorer

T0 = 1_767_225_600.0
WINDOW, CAP = 32, 300
HISTORY = ThresholdSettings().history
"""The default window and threshold history."""


def engine() -> Engine:
    settings = DetectorSettings(
        window=WINDOW,
        stride=4,
        max_series=CAP,
        threshold=ThresholdSettings(warmup=2),
        alerting=AlertSettings(),
    )
    return Engine([Detector(settings, FakeScorer(window=WINDOW, baseline=np.linspace(0.005, 0.015, HISTORY)))])


def feed(e: Engine, first: int, count: int) -> None:
    """`count` new series, each with one full window scored (so each has buffer, threshold and alert state)."""
    for start in range(first, first + count, 100):
        names = [f"host-{n:06d}/cpu" for n in range(start, min(start + 100, first + count))]
        e.process([Point(name, T0 + 60.0 * i, {"value": 0.1 * (i % 2)}) for i in range(WINDOW) for name in names])
        e.detectors[0].scorer.calls.clear()  # the fake scorer's record of calls is not the engine's memory


def held() -> int:
    """Bytes held by live objects: a full collection first, which also empties the interpreter's free lists
    (up to 2,000 spare tuples of each small size count as traced memory until then: noise of about 100 KiB)."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_memory_is_flat_under_ever_new_series_and_the_cost_per_series_is_printed():
    e = engine()
    tracemalloc.start()
    try:
        before = held()
        feed(e, 0, CAP)
        at_cap = held()
        feed(e, CAP, 2 * CAP)
        after = held()
    finally:
        tracemalloc.stop()
    assert e.series_tracked() == CAP
    assert e.dropped()["evicted_series"] == 2 * CAP
    assert after < at_cap * 1.1, f"memory grew from {at_cap} to {after} bytes with evictions"
    per_series = (at_cap - before) / CAP
    state = e.detectors[0].snapshot(f"host-{3 * CAP - 1:06d}/cpu")
    record = len(encode_page([StateRecord("s", "default", 0, 0, state)]))
    print(
        f"\nmemory per tracked series: {per_series / 1024:.1f} KiB (window {WINDOW}, threshold history {HISTORY}); "
        f"changelog record: {record / 1024:.1f} KiB; {CAP} series: {(at_cap - before) / 2**20:.1f} MiB"
    )
    assert per_series < 64 * 1024
