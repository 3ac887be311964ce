"""Instructions the daemon executes per point, step by step, without the model: figures a noisy host does not move.

The times of `bench/loop_cost.py` move by 20 to 30% between runs on a shared machine, more than most
changes to the per-point Python gain. Instructions counted by valgrind (callgrind) do not move. Over
native JSON messages of `--series` series in turn (polls of `kafka.max_poll_records`, the shipped
detector settings at `--stride`, checkpoints on), this script runs, each under callgrind: the message
decoder alone, message by message (what a raw consume does too); `Service._take_in` and `Engine.start`
(or `window_columns` for a poll in columns) with the scoring dropped: the daemon's decoding of the poll
(whole, for a poll of common messages) less the decoder's figure, route, refuse, the checkpoint's
`admit`, entity join and windowing, one figure since a poll in columns needs its series in the windows to
be taken as columns at all; and the whole `Service.step` with a stand-in model (the scoring thread's
thresholds, alerts and verdicts, then publishing, metrics and checkpoints; the forward pass is
`loop_cost`'s business). Each figure is instructions per point: a slope between runs of two lengths
(`--points` per series), so start-up costs cancel, less the slope of building the stream alone (or of
the part before):

    python bench/loop_instructions.py [--series 1000] [--points 40,80] [--stride 4] [--code DIR ...]

`--code DIR` measures the `monitor` package of other checkouts too (a before and an after in one run).
`--floor` adds a reference: the per-point lookups and checks of route, refuse, admit and the windows'
slot and row written as one loop over the parsed points, with nothing else (no LRU order, no counters, no
ring writes or due windows): about the least any per-point Python doing that work can take.
Needs valgrind (`apt-get install valgrind`); about six minutes per checkout at the defaults.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

# isort: off
import monitor  # noqa: F401 (imported before `common` puts this checkout first: PYTHONPATH names the one measured)
import numpy as np
from common import ROOT, table
from monitor.engine.detector import Detector
from monitor.records import Message, Point
from monitor.service.checkpoint import _Origin
from state_cost import PARTITIONS, CheapScorer, CountingChangelog, Quiet, native_polls
# isort: on

PARTS = ("build", "parse", "window", "step", "floor")
"""What a child run does after building the stream: nothing; parse each message (`input.format`'s decoder:
what a raw consume does too); the service's taking in (also route, refuse, admit) and windowing; or the
service's whole step (also scoring with a stand-in model, judging, publishing, checkpoints); or parse
and then `fused` (`--floor`)."""
FIGURES = ("parse", "route, refuse, admit, window", "score, judge, publish, checkpoint", "total")
FLOOR = "floor: one loop"
POLL_S = 0.1
"""The checkpoints' clock advances this much a poll (2,000 points at 20,000 points/s), not with the host."""


def fused(
    points: list[list[Point]], poll: list[Message], detector: Detector, state: tuple[dict, dict, dict, dict]
) -> None:
    """`--floor`: route, feature row, replay check, changed mark and slot of each point in one loop, then
    the poll's columns as arrays; the least per-point Python can do of what the service and windows do."""
    routes, origins, dirty, slots = state
    features = detector.settings.features
    series, stamps, rows, slotted = [], [], [], []
    for message, decoded in zip(poll, points, strict=True):
        for point in decoded:
            name = point.series
            if routes.get(name) is None:
                routes[name] = detector
            try:
                row = tuple(map(point.values.__getitem__, features))
            except KeyError:
                continue
            origin = origins.get(name)
            if origin is not None and origin.partition == message.partition:
                if message.offset < origin.next_offset:
                    continue
                origin.next_offset = message.offset + 1
            else:
                origins[name] = _Origin(message.partition, message.offset + 1, detector)
            if name not in dirty:
                dirty[name] = message.partition
            slot = slots.get(name)
            if slot is None:
                slot = slots[name] = len(slots)
            series.append(name)
            stamps.append(point.ts)
            rows.append(row)
            slotted.append(slot)
    np.array(slotted), np.array(stamps, dtype=float), np.array(rows, dtype=float)


class Dropping:
    """An executor that never runs what it is given: `Engine.start` windows, and scores nothing."""

    def submit(self, fn: object, *args: object) -> Future[None]:
        future: Future[None] = Future()
        future.set_result(None)
        return future


def child(series: int, points: int, stride: int, part: str) -> None:
    """One measured run (inside callgrind): build the stream, then take it in up to `part`."""
    from monitor.config import load_config
    from monitor.engine.detector import Engine
    from monitor.formats import native
    from monitor.observability.exporter import Exporter
    from monitor.observability.health import Health
    from monitor.service.checkpoint import Checkpoints
    from monitor.service.loop import Service
    from monitor.service.runtime import settle_for_a_long_run

    polls = native_polls(series, points)
    settle_for_a_long_run()
    settings = load_config(ROOT / "config.yaml").detectors[0].settings
    engine = Engine([Detector(replace(settings, stride=stride), CheapScorer(settings.window))])
    clock = [0.0]
    checkpoints = Checkpoints(engine, CountingChangelog(), 1.0, lambda: clock[0], max_replay_s=60.0)
    checkpoints.on_assigned(range(PARTITIONS))
    checkpoints.sync()
    edges = Quiet()
    whole = {"decode_poll": native.decode_json_poll} if hasattr(native, "decode_json_poll") else {}  # as the daemon
    service = Service(engine, edges, edges, Exporter(), Health(), **whole, checkpoints=checkpoints)  # type: ignore[arg-type]
    dropping = Dropping()
    floor_state: tuple[dict, dict, dict, dict] = ({}, {}, {}, {})
    for poll in polls if part != "build" else []:
        clock[0] += POLL_S
        if part == "step":
            service.step(poll)
            continue
        if part == "parse":
            for message in poll:
                service.decode(message.value, message.timestamp)
            continue
        if part == "floor":
            fused([service.decode(m.value, m.timestamp) for m in poll], poll, engine.detectors[0], floor_state)  # type: ignore[arg-type] (no Rejected here)
            continue
        routed, columns = take_in(service, poll)
        if columns is None:
            engine.start(routed, dropping)  # type: ignore[arg-type]
        elif hasattr(engine, "window_columns"):
            engine.window_columns(columns)
        else:  # a checkout from before the windowing was apart from the scoring (`--code`)
            engine.start_columns(columns, dropping)


def take_in(service: Any, poll: list[Message]) -> tuple[list, Any]:
    """The service's routed points of a poll and its columns (None when it took the poll point by point);
    a checkout from before the columns (`--code`) decodes and routes in `_decode` alone."""
    if hasattr(service, "_take_in"):
        return service._take_in(poll)
    return service._decode(poll), None  # type: ignore[call-arg]


def instructions(code: Path, series: int, points: int, stride: int, part: str) -> int:
    """Instructions of one child run under callgrind, with `code`'s `monitor` package."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
               "--child", part, "--series", str(series), "--points", str(points), "--stride", str(stride)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONHASHSEED": "0"}  # the same dict probes every run
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))  # type: ignore[union-attr]


def per_point(code: Path, series: int, lengths: tuple[int, int], stride: int, floor: bool) -> dict[str, float]:
    """Instructions per point of each step, from the slopes of the parts between the two lengths."""
    runs = [(part, n) for part in PARTS if floor or part != "floor" for n in lengths]
    with ThreadPoolExecutor(2) as pool:  # two valgrind processes at a time, one per core
        counts = dict(zip(runs, pool.map(lambda r: instructions(code, series, r[1], stride, r[0]), runs), strict=True))
    slope = {part: (counts[part, lengths[1]] - counts[part, lengths[0]]) / ((lengths[1] - lengths[0]) * series)
             for part, _ in runs}  # fmt: skip
    reference = {FLOOR: slope["floor"] - slope["parse"]} if floor else {}
    return reference | {
        "parse": slope["parse"] - slope["build"],
        "route, refuse, admit, window": slope["window"] - slope["parse"],
        "score, judge, publish, checkpoint": slope["step"] - slope["window"],
        "total": slope["step"] - slope["build"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", default="40,80", help="two lengths, points per series")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--code", type=Path, action="append", help="another checkout's root (repeatable)")
    parser.add_argument("--floor", action="store_true", help="also the one-loop reference (`fused`)")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.series, int(args.points), args.stride, args.child)
        return
    short, long = (int(n) for n in args.points.split(","))
    columns = (*FIGURES, FLOOR) if args.floor else FIGURES
    rows = [("code", "series", "stride", *columns)]
    for code in [ROOT, *(args.code or [])]:
        figures = per_point(code.resolve(), args.series, (short, long), args.stride, args.floor)
        rows.append((str(code), f"{args.series:,}", str(args.stride), *(f"{figures[k]:,.0f}" for k in columns)))
        print(f"measured {code}", file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
