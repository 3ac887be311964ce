"""Throughput of the monitor against the real broker, and of its parts, measured in one run.

    python bench/throughput.py [--series 1000] [--points 1280] [--window 32] [--hidden 32] [--stride 4] [--repeats 3]
    python bench/throughput.py --series-sweep 1000,10000,100000 [--sweep-records 500000] [--sweep-repeats 5]
                                                                 [--sweep-compare-up-to 10000]

The defaults are the shipped model (window 32, hidden 32, latent 16) and the shipped stride 1, measured
with each Kafka client (`kafka.client`: kafka-python, confluent-kafka):
(a) raw consume: the client + decoding only, the ceiling for anything that reads the topic;
(b) the scorer alone on pre-built batches of 256 windows (one and two threads), for the shipped model and
    for the heavier window 64 / hidden 64 one, and per backend (torch, ONNX Runtime) at batch 1 and 256;
(c) the daemon as `monitor run` builds it (checkpoints, reload, HTTP endpoint) at stride 1 and at
    `--stride`, with scoring overlapping the next poll, in the steady state of a long run: the daemon first
    reads a topic holding the points until every series' window is full, its online normalisation settled
    and its threshold warmed up (the model never saw these series: `window + stride × (online_warmup +
    threshold warmup)` points each), then the rest of the stream is produced and measured (stride 1: at
    most `--stride1-records` records);
(d) the naive loop: one forward call per incoming point.
(a) and (c) run `--repeats` times per client, in turn, and their figures are the medians (a run of (c) at
stride 4 reads for a few seconds, and single runs move by 10 to 20%); the scorer alone on one thread is
timed again before each run of (c) at stride 1. It prints points/s and windows/s for each, and one line of
ratios per client, each the median over the repeats of a run against the baseline measured just before
it (the raw consume, the scorer alone): the host's speed drifts within a run by more than they differ.

`--series-sweep` measures (c) only, at stride 1 with kafka-python, at each series count: the shipped
checkpoint settings and `checkpoint.max_replay_s: 0` (every changed series written at every checkpoint,
as before issue 19), each the median of `--sweep-repeats` stretches of `--sweep-records` records, the
first produced once the daemon has read the first `--sweep-skip` points of every series (default: the
window, the online normalisation's warm-up of series the model never saw and the thresholds' warm-up, so
every count is measured in the steady state) and each next one once it has read the last; with the
changelog records and bytes written per point; then the ratio of each to the first count. The daemons of
all counts run side by side and take turns, one stretch each, so the counts are measured alternately
within the same minutes; the ratio of the medians is printed, and the ratio round by round.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate, pairwise
from pathlib import Path

import numpy as np
import torch
from common import bootstrap, fresh, median_rate, produce_file, steady_after, stream_file, table, timed, train_small
from confluent_kafka import Consumer
from kafka import KafkaConsumer

from monitor.config import parse_config
from monitor.engine.detector import DetectorSettings
from monitor.formats.native import decode_json
from monitor.models import TorchScorer
from monitor.service.daemon import build_service
from monitor.synthetic import StreamSpec


def raw_consume(server: str, topic: str, total: int, client: str) -> tuple[int, float]:
    """Points/s that the client reads and decodes, nothing else (from the first record to the last)."""
    read = _confluent_records if client == "confluent-kafka" else _kafka_python_records
    points, started = 0, None
    for value, timestamp in read(server, topic, total):
        started = started or time.perf_counter()
        decoded = decode_json(value, timestamp)
        points += len(decoded) if isinstance(decoded, list) else 0
    return points, time.perf_counter() - (started or time.perf_counter())


def _kafka_python_records(server: str, topic: str, total: int) -> Iterator[tuple[bytes, float]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=server, group_id=fresh("raw"), auto_offset_reset="earliest",
        enable_auto_commit=False, max_poll_records=2000,
    )  # fmt: skip
    seen = 0
    while seen < total:
        for records in consumer.poll(timeout_ms=500).values():
            seen += len(records)
            yield from ((r.value, r.timestamp / 1000.0) for r in records)
    consumer.close()


def _confluent_records(server: str, topic: str, total: int) -> Iterator[tuple[bytes, float]]:
    consumer = Consumer(
        {"bootstrap.servers": server, "group.id": fresh("raw"), "auto.offset.reset": "earliest",
         "enable.auto.commit": False},
    )  # fmt: skip
    consumer.subscribe([topic])
    seen = 0
    while seen < total:
        records = [r for r in consumer.consume(2000, 0.5) if r.error() is None]
        seen += len(records)
        yield from ((r.value(), r.timestamp()[1] / 1000.0) for r in records)
    consumer.close()


def scorer_alone(scorer: TorchScorer, window: int, batch: int = 256, seconds: float = 0.2) -> float:
    """Windows per second over a pre-built batch (median of 5 timings, each of calls for `seconds` or one)."""
    rng = np.random.default_rng(0)
    windows = rng.normal(0.5, 0.1, (batch, window, 1))
    series = [f"host-{i % 1000:02d}/cpu" for i in range(batch)]
    scorer.score(series, windows)

    def run() -> tuple[int, float]:
        count, started = 0, time.perf_counter()
        while not count or time.perf_counter() - started < seconds:
            count += len(scorer.score(series, windows).scores)
        return count, time.perf_counter() - started

    return median_rate(run, 5)


def backends(model: Path, window: int) -> dict[tuple[int, int], tuple[float, float]]:
    """(threads, batch) → (torch, onnx) windows/s of the scorer alone, both backends timed back to back."""
    rates = {}
    for threads in (1, 2):
        scorers = [TorchScorer.from_path(model, threads=threads, backend=b) for b in ("torch", "onnx")]
        for batch in (1, 256):
            rates[threads, batch] = (scorer_alone(scorers[0], window, batch), scorer_alone(scorers[1], window, batch))
    torch.set_num_threads(1)  # the scorers set it process-wide; the rest of the run measures one thread
    return rates


@dataclass(frozen=True)
class Phases:
    """A stream as kcat files: the first takes every series through its window and warm-ups, each of the
    others is a stretch of the steady state that `daemon_loop` measures on its own."""

    files: tuple[Path, ...]
    records: tuple[int, ...]

    def remove(self) -> None:
        for path in self.files:
            path.unlink()


def phases(spec: StreamSpec, bounds: list[int], path: Path) -> Phases:
    """Time steps [0, bounds[0]) of the stream to warm up, then each [bounds[i], bounds[i + 1]) to measure,
    in files named after `path`."""
    files = tuple(path.with_suffix(f".{i}.tsv") for i in range(len(bounds)))
    steps = pairwise([0, *bounds])
    return Phases(files, tuple(stream_file(spec, f, *step) for f, step in zip(files, steps, strict=True)))


class Turns:
    """Daemon loops that take turns, each in its own thread, one running at a time: a loop runs one phase of
    its stream, hands on to the next loop (the last to the first) and waits for its next turn. So the
    stretches of every series count are measured alternately within the same minutes, and a host that
    speeds up or slows down (its other tenants) moves every count alike, where counts measured one after
    the other moved their ratio by 0.2 between runs of the same code. A waiting loop's checkpoints run on
    a clock that stands still (`clock`), so a wait does not make its series overdue."""

    def __init__(self, members: int) -> None:
        self._turn = threading.Condition()
        self._active = list(range(members))
        self._at = 0
        self._waited = [0.0] * members

    def wait(self, who: int) -> None:
        started = time.monotonic()
        with self._turn:
            self._turn.wait_for(lambda: self._active[self._at] == who)
        self._waited[who] += time.monotonic() - started

    def pass_on(self, who: int, done: bool = False) -> None:
        """The next loop's turn; `done`: this loop leaves the rotation."""
        with self._turn:
            i = self._active.index(who)
            if done:
                self._active.pop(i)
                self._at = i % len(self._active) if self._active else 0
            else:
                self._at = (i + 1) % len(self._active)
            self._turn.notify_all()

    def clock(self, who: int) -> Callable[[], float]:
        """`time.monotonic` less the time `who` waits from now on."""
        before = self._waited[who]
        return lambda: time.monotonic() - (self._waited[who] - before)


def daemon_loop(
    server: str,
    stream: Phases,
    model: Path,
    window: int,
    stride: int,
    overlap: bool = True,
    checkpoint: bool | dict = True,
    backend: str = "torch",
    client: str = "kafka-python",
    turns: tuple[Turns, int] | None = None,
) -> tuple[list[tuple[int, int, float]], Counter[str]]:
    """`monitor run` as shipped (`build_service`: checkpoints, model reload, HTTP endpoint) on a fresh topic
    holding the warm-up file of `stream`; each time it has read all that is on the topic, the next file is
    produced, and the run is measured from its first record to its last: returns (points, windows,
    seconds) of each measured file (the stop's final checkpoint is not throughput), and the changelog
    records and bytes (key + value) written while measured. `checkpoint`: on or off, or the `checkpoint`
    section itself. `turns`: the rotation and this loop's place in it; it waits for its turn before its
    warm-up, before each measured file and before it stops (the caller hands the last turn on).

    Why in phases: kafka-python reads a backlog's partitions at rates as far apart as 2 to 1, so when the
    first N records of a single topic have been read, some partitions are through their share of N and
    others far from it, their series still in the warm-ups (the measurement used to start there, inside the
    normalisation's warm-up: a one-off at 100,000 series with `online_warmup` 16 found two partitions read to
    their end and one 80% through, and a quarter of the measured windows still learning their series'
    normalisation). A topic read to its end has every series past them."""
    rotation, me = turns if turns is not None else (Turns(1), 0)
    rotation.wait(me)
    topic = fresh("metrics")
    produce_file(server, topic, stream.files[0])
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": server, "metrics_topic": topic, "group_id": fresh("e2e"),
                "alert_topic": fresh("alerts"), "dead_letter_topic": fresh("dlq"), "client": client,
            },
            "exporter": {"listen": "127.0.0.1:0"},
            "scoring": {"overlap": overlap, "backend": backend},
            "checkpoint": checkpoint if isinstance(checkpoint, dict) else {"enabled": checkpoint},
            "detectors": [{"window": window, "stride": stride, "model": {"path": str(model)}}],
        }
    )  # fmt: skip
    service, release = build_service(config)
    read, polled, produced = service.source.poll, [0], [1]
    ends = list(accumulate(stream.records))
    written: Counter[str] = Counter()
    started: list[tuple[float, int, int, Counter[str]]] = []
    spans: list[tuple[tuple[float, int, int, Counter[str]], ...]] = []

    def mark() -> tuple[float, int, int, Counter[str]]:
        s = service.summary
        return time.perf_counter(), s.points, s.windows_scored, written.copy()

    def poll() -> list:
        if polled[0] >= ends[produced[0] - 1]:  # all that is on the topic was read
            if started:
                spans.append((started.pop(), mark()))
            if produced[0] == len(ends):  # stop only once every loop has measured its last stretch: a stop
                rotation.pass_on(me)  # (the final checkpoint, the state freed, the collector's thresholds
                rotation.wait(me)  # put back) then overlaps no other loop's measurement
                service.stop.set()
                return []
            rotation.pass_on(me)
            rotation.wait(me)
            produce_file(server, topic, stream.files[produced[0]], create=False)
            produced[0] += 1
        messages = read()
        if messages and not started and produced[0] > 1:
            started.append(mark())
        polled[0] += len(messages)
        return messages

    service.source.poll = poll  # type: ignore[method-assign]
    if service.checkpoints is not None:
        service.checkpoints.clock = rotation.clock(me)
        service.checkpoints.changelog.write = _counted(service.checkpoints.changelog.write, written)  # type: ignore[method-assign]
    service.run()
    release()
    measured: Counter[str] = Counter()
    for (_, _, _, c0), (_, _, _, c1) in spans:
        measured.update(c1 - c0)
    return [(p1 - p0, w1 - w0, t1 - t0) for (t0, p0, w0, _), (t1, p1, w1, _) in spans], measured


def _counted(
    write: Callable[[int, bytes, bytes | None], None], written: Counter[str]
) -> Callable[[int, bytes, bytes | None], None]:
    def counted(partition: int, key: bytes, value: bytes | None) -> None:
        written["records"] += 1
        written["bytes"] += len(key) + len(value or b"")
        write(partition, key, value)

    return counted


def series_sweep(
    server: str, model: Path, counts: list[int], skip: int, measured: int, repeats: int, compare: int, window: int
) -> None:
    """Points/s of the daemon at stride 1 along the series axis, shipped checkpoints against writing every
    changed series at every checkpoint (up to `compare` series: beyond, its window fill alone takes many
    minutes), each the median of `repeats` stretches of `measured` records once the windows are full. The
    loops of all counts and designs run side by side and take turns (`Turns`), the largest count first, so
    round r measures the r-th stretch of each one after the other; each stops in a turn of its own after
    the last round."""
    designs = {"shipped": {}, "max_replay_s 0": {"max_replay_s": 0}}
    members = [(n, name) for n in sorted(counts, reverse=True) for name in designs if not designs[name] or n <= compare]
    streams = {}
    for n in counts:
        bounds = [skip + i * -(-measured // n) for i in range(repeats + 1)]  # the warm-up's end, each stretch's
        spec = StreamSpec(series=n, points=bounds[-1], healthy=bounds[-1] // 2, anomalous_series=0)
        streams[n] = phases(spec, bounds, Path(model).parent / f"stream-{n}")
        print(f"{sum(streams[n].records):,} records ({n:,} series), {repeats} × {streams[n].records[1]:,} measured",
              flush=True)  # fmt: skip
    rotation = Turns(len(members))
    results: dict[tuple[int, str], tuple[list[tuple[int, int, float]], Counter[str]]] = {}
    failed: list[BaseException] = []

    def member(i: int, n: int, name: str) -> None:
        try:
            results[n, name] = daemon_loop(server, streams[n], model, window, 1, checkpoint=designs[name],
                                           turns=(rotation, i))  # fmt: skip
        except BaseException as exc:  # reported after the others finished
            failed.append(exc)
        finally:
            gc.collect()  # the daemon's state is freed in this loop's turn, not in the next one's
            rotation.pass_on(i, done=True)

    threads = [threading.Thread(target=member, args=(i, *m)) for i, m in enumerate(members)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for stream in streams.values():
        stream.remove()
    if failed:
        raise failed[0]
    rows, rates = [("series", "checkpoints", "points/s", "windows/s", "records/point", "bytes/point")], {}
    for n, name in sorted(results):
        parts, written = results[n, name]
        rates[n, name] = [p / s for p, _, s in parts]
        points = sum(p for p, _, _ in parts)
        windows = statistics.median(w / s for _, w, s in parts)
        rows.append((f"{n:,}", name, f"{statistics.median(rates[n, name]):,.0f}", f"{windows:,.0f}",
                     f"{written['records'] / points:.4f}", f"{written['bytes'] / points:,.1f}"))  # fmt: skip
    print(table(rows))
    for (n, name), runs in sorted(rates.items()):
        print(f"runs {n:,} {name}, points/s: " + "/".join(f"{r:,.0f}" for r in runs))
    for name in designs:
        if (counts[0], name) not in rates:  # a design measured only up to --sweep-compare-up-to
            continue
        base = rates[counts[0], name]
        others = [n for n in counts[1:] if (n, name) in rates]
        if not others:
            continue
        ratios = (f"{n}/{counts[0]}={statistics.median(rates[n, name]) / statistics.median(base):.2f}" for n in others)
        print(f"ratios {name}: " + " ".join(ratios))
        for n in others:
            rounds = (f"{r / b:.2f}" for r, b in zip(rates[n, name], base, strict=True))
            print(f"  round by round {n}/{counts[0]}: " + "/".join(rounds))


def naive(scorer: TorchScorer, window: int, count: int = 2000) -> float:
    """The blog-post loop: append the point, run the model on that one window, every point."""
    rng = np.random.default_rng(1)
    buffer = list(rng.normal(0.5, 0.1, window))

    def run() -> int:
        for _ in range(count):
            buffer.append(float(rng.normal(0.5, 0.1)))
            del buffer[0]
            scorer.score(["s"], np.asarray(buffer)[None, :, None])
        return count

    return median_rate(lambda: timed(run), 3)


CLIENTS = ("kafka-python", "confluent-kafka")


def median_run(runs: list[tuple[int, int, float]]) -> tuple[int, int, float]:
    """Of (points, windows, seconds) runs, the one with the median points/s (the lower middle of an even count)."""
    return sorted(runs, key=lambda run: run[0] / run[2])[(len(runs) - 1) // 2]


def paired(runs: list[tuple[int, int, float]], baselines: list[float], windows: bool = False) -> float:
    """The median over repeats of a daemon run's points/s (or windows/s) against the baseline measured just
    before it: the host's speed drifts within a run by more than the figures differ, so each ratio pairs
    figures measured minutes apart at most."""
    return statistics.median((w if windows else p) / s / b for (p, w, s), b in zip(runs, baselines, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1280, help="points per series")
    parser.add_argument("--window", type=int, default=DetectorSettings().window)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--stride", type=int, default=4, help="the second stride measured in (c)")
    parser.add_argument("--stride1-records", type=int, default=200_000, help="records measured at stride 1")
    parser.add_argument("--series-sweep", help="comma-separated series counts: the daemon at stride 1 only")
    parser.add_argument("--sweep-records", type=int, default=500_000, help="records of each measured stretch")
    parser.add_argument("--sweep-repeats", type=int, default=5, help="measured stretches per count (median)")
    parser.add_argument("--sweep-skip", type=int, default=0, help="points per series before the measurement")
    parser.add_argument("--sweep-compare-up-to", type=int, default=10_000, help="series counts with max_replay_s 0")
    parser.add_argument("--repeats", type=int, default=3, help="runs of (a) and (c) per client; medians are printed")
    args = parser.parse_args()

    server = bootstrap()
    model = train_small(args.window, args.hidden, latent=16)
    if args.series_sweep:
        counts = [int(n) for n in args.series_sweep.split(",")]
        skip = args.sweep_skip or steady_after(args.window, 1)
        series_sweep(
            server, model, counts, skip, args.sweep_records, args.sweep_repeats, args.sweep_compare_up_to, args.window
        )
        return
    settled = steady_after(args.window, args.stride)
    if args.points <= settled:
        parser.error(f"--points {args.points}: at stride {args.stride} the steady state starts after {settled} points")
    heavy = train_small(64, 64, latent=16)
    scorer = TorchScorer.from_path(model)
    spec = StreamSpec(series=args.series, points=args.points, healthy=args.points // 2, anomalous_series=0)
    path = Path(model).parent / "stream.tsv"
    total = stream_file(spec, path)
    topic = fresh("metrics")
    print(f"producing {total:,} records ({args.series} series) to {topic} with kcat (raw consume) ...", flush=True)
    produce_file(server, topic, path)
    path.unlink()  # the raw consume reads the topic; the phases below are files of their own

    print("measuring scorers, raw consume and the daemon loop per client, naive loop ...", flush=True)
    scorer_rates = {(m, t): scorer_alone(TorchScorer.from_path(p, threads=t), w) for m, p, w in (
        ("shipped", model, args.window), ("64x64", heavy, 64)) for t in (1, 2)}  # fmt: skip
    torch.set_num_threads(1)  # the scorers set it process-wide; the rest of the run measures one thread
    backend_rates = backends(model, args.window)
    one = scorer_rates["shipped", 1]
    runs: dict[str, tuple[list[float], list[float], list[tuple[int, int, float]], list[tuple[int, int, float]]]] = {}
    settled1 = steady_after(args.window, 1)
    last1 = min(settled1 + -(-args.stride1_records // args.series), args.points)
    streams = (phases(spec, [settled1, last1], path.with_name("stride1")), phases(spec, [settled, args.points], path))
    for client in CLIENTS:
        raws, scorers, stride1, strided = runs[client] = [], [], [], []
        for _ in range(args.repeats):
            raw_points, raw_s = raw_consume(server, topic, total, client)
            raws.append(raw_points / raw_s)
            scorers.append(scorer_alone(TorchScorer.from_path(model), args.window))
            stride1 += daemon_loop(server, streams[0], model, args.window, 1, client=client)[0]
            strided += daemon_loop(server, streams[1], model, args.window, args.stride, client=client)[0]
    for stream in streams:
        stream.remove()
    naive_rate = naive(scorer, args.window)
    per_client = {c: (statistics.median(r), median_run(s1), median_run(sd)) for c, (r, _, s1, sd) in runs.items()}

    rows = [
        ("measurement", "points/s", "windows/s"),
        *((f"(b) scorer alone, {m}, batch 256, {t} thread{'s' * (t > 1)}", "-", f"{r:,.0f}")
          for (m, t), r in scorer_rates.items()),
        *((f"(b) batch {b}, {t} thread{'s' * (t > 1)}: torch | onnx", "-", f"{r[0]:,.0f} | {r[1]:,.0f}")
          for (t, b), r in backend_rates.items()),
    ]  # fmt: skip
    for client, (raw, (p1, w1, s1), (pd, wd, sd)) in per_client.items():
        rows += [
            (f"(a) {client}: raw consume + decode", f"{raw:,.0f}", "-"),
            (f"(c) {client}: daemon, stride 1", f"{p1 / s1:,.0f}", f"{w1 / s1:,.0f}"),
            (f"(c) {client}: daemon, stride {args.stride}", f"{pd / sd:,.0f}", f"{wd / sd:,.0f}"),
        ]
    rows.append(("(d) naive, one forward per point", f"{naive_rate:,.0f}", f"{naive_rate:,.0f}"))
    print(table(rows))
    for client, (raws, scorers, stride1, strided) in runs.items():
        _, (p1, _w1, s1), _ = per_client[client]
        print(
            f"ratios {client}: e2e_stride1/scorer_1thread={paired(stride1, scorers, windows=True):.2f} "
            f"e2e_stride{args.stride}/raw_consume={paired(strided, raws):.2f} "
            f"e2e_stride1/naive={p1 / s1 / naive_rate:.1f} points_per_s_stride1={p1 / s1:,.0f}"
        )
    for client, (raws, scorers, stride1, strided) in runs.items():
        print(
            f"runs {client}: scorer_1thread={'/'.join(f'{r:,.0f}' for r in scorers)} windows/s, "
            f"points/s: raw_consume={'/'.join(f'{r:,.0f}' for r in raws)} "
            f"stride1={'/'.join(f'{p / s:,.0f}' for p, _, s in stride1)} "
            f"stride{args.stride}={'/'.join(f'{p / s:,.0f}' for p, _, s in strided)}"
        )
    print(
        "ratios backends: "
        + " ".join(f"onnx/torch_b{b}_t{t}={r[1] / r[0]:.2f}" for (t, b), r in backend_rates.items())
        + f" shipped/64x64_1thread={one / scorer_rates['64x64', 1]:.2f}"
    )


if __name__ == "__main__":
    main()
