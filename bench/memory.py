"""Resident memory per tracked series, measured on the engine the daemon builds, at 10k and 100k series.

    python bench/memory.py [--series 10000 100000] [--window 64] [--extra 36] [--steady-series 500]

Each size runs in its own process (memory freed by one size would be reused by the next and hide its
cost): it loads a small real model the way `monitor run` does (`load_scorer`, daemon defaults: stride 1,
online normalisation of unseen series, threshold history 2000), reads the RSS, pushes `window + extra`
points into every series through `Engine.process` (so each series has a full window, `extra` scored
windows, its threshold statistics past warm-up and its online normalisation learned), and reads the RSS
again. The difference over the number of series is the cost of one tracked series (1 feature).

A series' threshold statistics hold up to `threshold.history` (2000) of its own scores, so a layout whose
cost grows with them is only seen at steady state: the last row fills `--steady-series` series with
`history` scored windows each (fewer series, since that takes `history` points per series).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

import numpy as np
from common import table, train_small

from monitor.config import parse_config
from monitor.engine.detector import Detector, Engine
from monitor.engine.threshold import ThresholdSettings
from monitor.records import Point
from monitor.service.reload import load_scorer

POLL = 2000
"""Points per `process` call: the daemon's `kafka.max_poll_records`."""


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (no dependency; Linux, like the daemon's image)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one_size(series: int, window: int, extra: int, model: str) -> dict[str, float]:
    """Build the engine, fill `series` series, and return RSS before/after and the time it took."""
    doc = {"detectors": [{"window": window, "max_series": max(series, 100_000), "model": {"path": model}}]}
    detector = parse_config(doc, environ={}).detectors[0]
    scorer = load_scorer(detector, threads=1)
    engine = Engine([Detector(detector.settings, scorer)])
    scorer.score(["warm-up"] * 256, np.zeros((256, window, 1)))  # torch's own buffers, allocated once
    rng = np.random.default_rng(0)
    phase = rng.uniform(0, 6.3, series)
    gc.collect()
    before = rss_bytes()
    started, windows = time.perf_counter(), 0
    for step in range(window + extra):
        values = (np.sin(phase + step / 9) + rng.normal(0, 0.05, series)).tolist()
        ts = 1_700_000_000.0 + 60.0 * step
        for start in range(0, series, POLL):
            points = [
                Point(f"host-{i:06d}/cpu", ts, {"value": values[i]}) for i in range(start, min(start + POLL, series))
            ]
            windows += len(engine.process(points).verdicts)
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    if engine.series_tracked() != series:
        raise SystemExit(f"tracked {engine.series_tracked()} series, expected {series}")
    return {"series": series, "before": before, "after": after, "windows": windows, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument(
        "--extra", type=int, default=36, help="points per series after its window is full (36: past the warm-ups)"
    )
    parser.add_argument("--steady-series", type=int, default=500, help="series filled to steady state (0: skip)")
    parser.add_argument("--model", help=argparse.SUPPRESS)  # set by the parent for its one-size children
    args = parser.parse_args()
    if args.model:
        [series] = args.series
        print(json.dumps(one_size(series, args.window, args.extra, args.model)))
        return

    model = str(train_small(args.window, hidden=8, latent=4))  # the model's size is not per series
    history = ThresholdSettings().history
    runs = [(f"{n // 1000}k" if n % 1000 == 0 else str(n), n, args.extra) for n in args.series]
    runs += [(f"steady_{args.steady_series}", args.steady_series, history)] if args.steady_series else []
    results = []
    for name, series, extra in runs:
        print(f"{series:,} series: {args.window + extra} points each ...", flush=True)
        command = [sys.executable, __file__, "--series", str(series), "--window", str(args.window)]
        command += ["--extra", str(extra), "--model", model, "--steady-series", "0"]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append((name, json.loads(out.strip().splitlines()[-1])))

    rows = [("series", "points each", "RSS before MiB", "RSS after MiB", "KiB/series", "windows scored", "fill s")]
    per_series = {}
    for (name, r), (_, _, extra) in zip(results, runs, strict=True):
        per_series[name] = (r["after"] - r["before"]) / r["series"] / 1024
        rows.append(
            (
                f"{r['series']:,}" + (" (steady)" if name.startswith("steady") else ""),
                f"{args.window + extra}",
                f"{r['before'] / 2**20:,.1f}",
                f"{r['after'] / 2**20:,.1f}",
                f"{per_series[name]:.2f}",
                f"{r['windows']:,.0f}",
                f"{r['seconds']:.0f}",
            )
        )
    print(table(rows))
    figures = " ".join(f"kib_per_series_{name}={kib:.2f}" for name, kib in per_series.items())
    first, last = runs[0][0], runs[len(args.series) - 1][0]
    ratio = f" ratio_{last}/{first}={per_series[last] / per_series[first]:.2f}" if last != first else ""
    print(f"{figures}{ratio} target<=4.00 (window {args.window}, 1 feature)")


if __name__ == "__main__":
    main()
