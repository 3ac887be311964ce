"""What the daemon's loop thread spends per point, in-process: no broker, the real model, the shipped settings.

`Service.run` over pre-built native JSON messages (`--series` series in turn over 4 partitions, polls of
`kafka.max_poll_records`), wired as the daemon wires it: the shipped detector settings (`--stride` apart),
checkpoints on (a changelog that only counts), scoring overlap on, and a `TorchScorer` of the shipped size
(window 32, hidden 32, latent 16) in the scoring thread with the shipped `scoring.threads`:

    python bench/loop_cost.py [--series 1000] [--points 120] [--skip 64] [--stride 1] [--repeats 3]

Measured over the points after the first `--skip` of every series (64: windows full; 288: also past the
online normalisation's warm-up of series the model never saw; 304: also past the thresholds' warm-up, after
which the alert tracker follows every window too: the steady state): CPU time of the loop thread
per point (thread time: what the loop itself costs, apart from the scoring thread and from waiting for it),
wall time per point, and the loop thread's CPU time per step of a poll: decode (and dead-letter, route,
refuse, admit: `Service._take_in`), window (`Engine.window`, or `window_columns` for a poll in columns),
finish (publish, flush, metrics), settle (checkpoint, commit). Medians of `--repeats` runs; the machine's
other load moves them, so compare runs made together.
The input and the start-up heap are kept out of the collector's full passes, and the collector runs at the
thresholds `build_service` sets.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from common import ROOT, table, train_small
from state_cost import PARTITIONS, POLL, CountingChangelog, Quiet, native_polls

from monitor.config import load_config
from monitor.engine.detector import Detector, Engine
from monitor.formats.native import decode_json_poll
from monitor.models import TorchScorer
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health
from monitor.records import Message
from monitor.service.checkpoint import Checkpoints
from monitor.service.loop import Service
from monitor.service.runtime import settle_for_a_long_run

SKIP = 64
"""Points per series before the measurement by default: the window, then some."""
STEPS = (("decode", Service, "_take_in"), ("window", Engine, "window"), ("window", Engine, "window_columns"),
         ("finish", Service, "_finish"), ("settle", Service, "_settle"))  # fmt: skip
"""The methods timed and the step their time counts to (a poll is windowed point by point or in columns)."""
NAMES = tuple(dict.fromkeys(name for name, _, _ in STEPS))


class Polls(Quiet):
    """Source and sink of the loop: hands out pre-built polls, drops what is sent, and notes the loop's
    clocks, and the CPU time spent in each step so far, when the measurement starts and when it ends."""

    def __init__(self, polls: list[list[Message]], skip: int, spent: Counter[str]) -> None:
        self.polls, self.skip, self.spent, self.served = polls, skip, spent, 0
        self.marks: list[tuple[float, float, Counter[str]]] = []

    def poll(self) -> list[Message] | None:
        if self.served in (self.skip, len(self.polls)):
            self.marks.append((time.thread_time(), time.perf_counter(), self.spent.copy()))
        self.served += 1
        return self.polls[self.served - 1] if self.served <= len(self.polls) else None


def timing(spent: Counter[str], name: str, method: Callable) -> Callable:
    """`method`, adding the loop thread's CPU time in it to `spent[name]`."""

    @functools.wraps(method)
    def timed(*args, **kwargs):
        started = time.thread_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent[name] += time.thread_time() - started

    return timed


def run(model: Path, polls: list[list[Message]], skip: int, stride: int) -> dict[str, float]:
    """One pass of the loop over `polls`; per point, from poll `skip` on: CPU and wall microseconds, and
    the CPU microseconds of each step."""
    shipped = load_config(ROOT / "config.yaml")
    detector = shipped.detectors[0]
    scorer = TorchScorer.from_path(model, threads=shipped.scoring_threads, online_warmup=detector.model.online_warmup)
    engine = Engine([Detector(replace(detector.settings, stride=stride), scorer)])
    interval, max_replay = shipped.checkpoint.interval_s, shipped.checkpoint.max_replay_s
    checkpoints = Checkpoints(engine, CountingChangelog(), interval, max_replay_s=max_replay)
    checkpoints.on_assigned(range(PARTITIONS))
    checkpoints.sync()
    spent: Counter[str] = Counter()
    source = Polls(polls, skip, spent)
    service = Service(
        engine,
        source,
        source,
        Exporter(),
        Health(),
        decode_poll=decode_json_poll,
        checkpoints=checkpoints,
        overlap=True,
    )
    originals = {method: getattr(owner, method) for _, owner, method in STEPS}
    try:
        for name, owner, method in STEPS:
            setattr(owner, method, timing(spent, name, originals[method]))
        service.run()
    finally:
        for _, owner, method in STEPS:
            setattr(owner, method, originals[method])
    (cpu0, wall0, steps0), (cpu1, wall1, steps1) = source.marks
    points = sum(len(p) for p in polls[skip:])
    steps = {name: (steps1[name] - steps0[name]) / points * 1e6 for name in NAMES}
    return {"cpu": (cpu1 - cpu0) / points * 1e6, "wall": (wall1 - wall0) / points * 1e6, **steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=120, help="points per series")
    parser.add_argument("--skip", type=int, default=SKIP, help="points per series before the measurement")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not 0 < args.skip < args.points:
        parser.error(f"--skip {args.skip} must be above 0 and below --points {args.points}")
    model = train_small(32, 32, latent=16)
    polls = native_polls(args.series, args.points)
    settle_for_a_long_run()
    runs = [run(model, polls, args.skip * args.series // POLL, args.stride) for _ in range(args.repeats)]
    for r in runs:
        print(" ".join(f"{k}={v:.2f}" for k, v in r.items()), flush=True)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rows = [("series", "stride", "loop CPU us/point", "wall us/point", *(f"{s} us" for s in NAMES))]
    rows.append((f"{args.series:,}", str(args.stride), *(f"{median[k]:.2f}" for k in median)))
    print(table(rows))


if __name__ == "__main__":
    main()
