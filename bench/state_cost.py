"""What the state changelog costs per input point, and what a restore replays: deterministic, no broker.

The shipped detector settings (config.yaml) with a cheap stand-in scorer (state size does not depend on
the model), the service's checkpoint order (admit, process, write when due, acknowledge, commit) on a
round-robin stream of `--series` series over 4 partitions, and a clock that advances with the points
processed at a nominal input rate (`--rate` points/s). Figures depend on the stream and the settings only,
not on the machine, so two designs compare exactly:

    python bench/state_cost.py --series 10000,100000 --points 48

Prints, over the last `--measure` points of every series (windows full, warm-ups done): changelog records
and bytes (key + value) per input point and per second of nominal input, and how many records a restart at
the end would re-read from the metrics topic (committed offset to position) and re-score.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Iterator, Sequence

import numpy as np
from common import ROOT, table

from monitor.config import load_config
from monitor.engine.detector import Detector, Engine
from monitor.engine.scoring import Scores
from monitor.records import Message, Point, encode_point
from monitor.service.checkpoint import Checkpoints

PARTITIONS = 4
POLL = 2000
"""Records per poll: kafka.max_poll_records of the shipped config."""


class CheapScorer:
    """Mean square of the window's tail: a score for every window at no model cost."""

    version, kind, features = "cheap-1", "cheap", ("value",)

    def __init__(self, window: int) -> None:
        self.window = window

    def score(self, series: Sequence[str], batch: np.ndarray, start=None, end=None) -> Scores:
        errors = (batch[:, -4:, :] ** 2).mean(axis=1) * 1e-3
        return Scores(scores=errors.sum(axis=1), feature_errors=errors)

    def baseline_scores(self) -> np.ndarray:
        return np.linspace(0.005, 0.015, 64)


class CountingChangelog:
    """Counts what would be written; keeps nothing (a restore is not simulated)."""

    def __init__(self) -> None:
        self.records = self.bytes = 0

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.records += 1
        self.bytes += len(key) + len(value or b"")

    def read(self, partitions: Collection[int]) -> Iterator[tuple[int, bytes, bytes | None]]:
        return iter(())

    def close(self) -> None:
        pass


class Quiet:
    """Source and sink of the service without a broker: every partition assigned, no lag, and commits,
    alerts, dead letters and flushes go nowhere."""

    def assigned(self) -> bool:
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        return {}

    def ignore(self, *args: object) -> None:
        """Nothing to do without a broker."""

    commit = publish = dead_letter = flush = close = ignore


def native_polls(series: int, points: int) -> list[list[Message]]:
    """Native JSON messages, every series in turn, one point each, cut into polls."""
    rng = np.random.default_rng(0)
    messages, offsets = [], [0] * PARTITIONS
    for i in range(points):
        values = rng.normal(0.5, 0.1, series)
        for n in range(series):
            point = Point(f"host-{n:06d}/cpu", 1_767_225_600.0 + 10.0 * i, {"value": float(values[n])})
            p = n % PARTITIONS
            value = bytes(memoryview(encode_point(point)))  # orjson's own bytes object holds ~4 KiB of heap
            messages.append(Message(value, point.ts, "metrics", p, offsets[p], point.series.encode()))
            offsets[p] += 1
    return [messages[i : i + POLL] for i in range(0, len(messages), POLL)]


def run(
    series: int, points: int, measure: int, rate: float, interval_s: float, max_replay_s: float, pages: int
) -> dict[str, float]:
    settings = load_config(ROOT / "config.yaml").detectors[0].settings
    engine = Engine([Detector(settings, CheapScorer(settings.window))])
    changelog = CountingChangelog()
    clock = [0.0]
    checkpoints = Checkpoints(engine, changelog, interval_s, lambda: clock[0], max_replay_s, pages)
    checkpoints.on_assigned(range(PARTITIONS))
    checkpoints.sync()
    names = [f"host-{i:06d}/cpu" for i in range(series)]
    offsets, committed = [0] * PARTITIONS, [0] * PARTITIONS
    rng = np.random.default_rng(0)
    before = (0, 0)
    batch: list[tuple[Message, Point]] = []
    for i in range(points):
        if i == points - measure:
            before = (changelog.records, changelog.bytes)
        values = rng.normal(size=series)
        for n, name in enumerate(names):
            p = n % PARTITIONS
            message = Message(b"", None, "metrics", p, offsets[p], None)
            batch.append((message, Point(name, 60.0 * i, {"value": values[n]})))
            offsets[p] += 1
            if len(batch) == POLL:
                _step(engine, checkpoints, batch, clock, rate, offsets, committed)
                batch = []
    measured = measure * series
    records, written = changelog.records - before[0], changelog.bytes - before[1]
    return {
        "records_per_point": records / measured,
        "bytes_per_point": written / measured,
        "bytes_per_s": written / (measured / rate),
        "replay_records": sum(offsets) - sum(committed),
    }


def _step(engine, checkpoints, batch, clock, rate, offsets, committed) -> None:
    clock[0] += len(batch) / rate
    routed = [r for m, point in batch for r in checkpoints.admit(m, engine.routed([point]))]
    outcome = engine.finish(engine.start(routed))
    checkpoints.processed(outcome.evicted)
    if checkpoints.due():
        checkpoints.write()
        committed[:] = _commit_offsets(checkpoints, offsets)
        checkpoints.committed()


def _commit_offsets(checkpoints: Checkpoints, positions: list[int]) -> list[int]:
    """What the service commits: the position, no further than the first record a written state lacks."""
    limits = checkpoints.replay_from()
    return [min(positions[p], limits.get(p, positions[p])) for p in range(PARTITIONS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", default="10000", help="comma-separated series counts")
    parser.add_argument("--points", type=int, default=48, help="points per series")
    parser.add_argument("--measure", type=int, default=12, help="last points per series that are measured")
    parser.add_argument("--rate", type=float, default=20_000.0, help="nominal input points/s")
    shipped = load_config(ROOT / "config.yaml").checkpoint
    parser.add_argument("--interval", type=float, default=shipped.interval_s, help="checkpoint.interval_s")
    parser.add_argument("--max-replay", type=float, default=shipped.max_replay_s, help="checkpoint.max_replay_s")
    parser.add_argument("--pages", type=int, default=shipped.pages, help="checkpoint.pages")
    args = parser.parse_args()
    rows = [("series", "records/point", "bytes/point", "KiB/s at rate", "replay records at end")]
    for n in (int(s) for s in args.series.split(",")):
        r = run(n, args.points, args.measure, args.rate, args.interval, args.max_replay, args.pages)
        rows.append(
            (
                f"{n:,}",
                f"{r['records_per_point']:.4f}",
                f"{r['bytes_per_point']:.1f}",
                f"{r['bytes_per_s'] / 1024:,.0f}",
                f"{r['replay_records']:,}",
            )
        )
        print(f"series={n} " + " ".join(f"{k}={v:.4g}" for k, v in r.items()), flush=True)
    print(
        f"rate {args.rate:,.0f} points/s, {args.points} points per series, last {args.measure} measured, "
        f"checkpoint.interval_s {args.interval:g}, checkpoint.max_replay_s {args.max_replay:g}, "
        f"checkpoint.pages {args.pages}"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
