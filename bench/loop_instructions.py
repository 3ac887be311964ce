"""Instructions the loop thread executes per point to decode and window it: a figure a noisy host does not move.

The times of `bench/loop_cost.py` move by 20 to 30% between runs on a shared machine, more than most
changes to the per-point Python gain. Instructions counted by valgrind (callgrind) do not move: this
script runs `Service._decode` (decode, route, refuse, the checkpoint's `admit`) and `Engine.start` (entity
join, windowing) over native JSON messages of `--series` series in turn (polls of `kafka.max_poll_records`,
the shipped detector settings at `--stride`, checkpoints on) under callgrind, with the scoring left out
(an executor that drops it: the model and the scoring thread are `loop_cost`'s business). Each figure is
a slope between runs of two lengths (`--points` per series), so start-up costs cancel, less the slope of
building the stream alone:

    python bench/loop_instructions.py [--series 1000] [--points 40,80] [--stride 4] [--code DIR ...]

`--code DIR` measures the `monitor` package of other checkouts too (a before and an after in one run).
Needs valgrind (`apt-get install valgrind`); about three minutes per checkout at the defaults.
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

# isort: off
import monitor  # noqa: F401 (imported before `common` puts this checkout first: PYTHONPATH names the one measured)
from common import ROOT, table
from state_cost import PARTITIONS, CheapScorer, CountingChangelog, native_polls
# isort: on

PARTS = ("build", "decode", "window")
"""What a child run does after building the stream: nothing, decode each poll, or decode and window it."""


class Dropping:
    """An executor that never runs what it is given: `Engine.start` windows, and scores nothing."""

    def submit(self, fn: object, *args: object) -> Future[None]:
        future: Future[None] = Future()
        future.set_result(None)
        return future


def child(series: int, points: int, stride: int, part: str) -> None:
    """One measured run (inside callgrind): build the stream, then take it in up to `part`."""
    from monitor.config import load_config
    from monitor.engine.detector import Detector, Engine
    from monitor.observability.exporter import Exporter
    from monitor.observability.health import Health
    from monitor.service.checkpoint import Checkpoints
    from monitor.service.loop import Service
    from monitor.service.runtime import settle_for_a_long_run

    polls = native_polls(series, points)
    settle_for_a_long_run()
    settings = load_config(ROOT / "config.yaml").detectors[0].settings
    engine = Engine([Detector(replace(settings, stride=stride), CheapScorer(settings.window))])
    checkpoints = Checkpoints(engine, CountingChangelog(), 1.0, max_replay_s=60.0)
    checkpoints.on_assigned(range(PARTITIONS))
    checkpoints.sync()
    service = Service(engine, None, None, Exporter(), Health(), checkpoints=checkpoints)  # type: ignore[arg-type]
    dropping = Dropping()
    for poll in polls if part != "build" else []:
        routed = service._decode(poll)
        if part == "window":
            engine.start(routed, dropping)  # type: ignore[arg-type]


def instructions(code: Path, series: int, points: int, stride: int, part: str) -> int:
    """Instructions of one child run under callgrind, with `code`'s `monitor` package."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
               "--child", part, "--series", str(series), "--points", str(points), "--stride", str(stride)]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(code)}, check=True
    )
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))  # type: ignore[union-attr]


def per_point(code: Path, series: int, lengths: tuple[int, int], stride: int) -> dict[str, float]:
    """Instructions per point of each step, from the slopes of the parts between the two lengths."""
    runs = [(part, n) for part in PARTS for n in lengths]
    with ThreadPoolExecutor(2) as pool:  # two valgrind processes at a time, one per core
        counts = dict(zip(runs, pool.map(lambda r: instructions(code, series, r[1], stride, r[0]), runs), strict=True))
    slope = {part: (counts[part, lengths[1]] - counts[part, lengths[0]]) / ((lengths[1] - lengths[0]) * series)
             for part in PARTS}  # fmt: skip
    decode, window = slope["decode"] - slope["build"], slope["window"] - slope["decode"]
    return {"decode": decode, "window": window, "total": decode + window}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", default="40,80", help="two lengths, points per series")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--code", type=Path, action="append", help="another checkout's root (repeatable)")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.series, int(args.points), args.stride, args.child)
        return
    short, long = (int(n) for n in args.points.split(","))
    rows = [("code", "series", "stride", "decode instr/point", "window instr/point", "total")]
    for code in [ROOT, *(args.code or [])]:
        figures = per_point(code.resolve(), args.series, (short, long), args.stride)
        rows.append((str(code), f"{args.series:,}", str(args.stride), *(f"{figures[k]:,.0f}" for k in figures)))
        print(f"measured {code}", file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
