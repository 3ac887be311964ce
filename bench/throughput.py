"""Throughput of the monitor against the real broker, and of its parts, measured in one run.

    python bench/throughput.py [--series 1000] [--points 2000] [--window 64] [--hidden 64]

(a) raw consume: kafka-python + decoding only, the ceiling for anything that reads the topic;
(b) the scorer alone on pre-built batches of 256 windows, and per backend (torch, ONNX Runtime) at batch 1
    and 256 with one and two threads;
(c) the daemon as `monitor run` builds it (checkpoints, reload, HTTP endpoint) at stride 1 and at the
    given stride, with scoring overlapping the next poll and without;
(d) the naive loop: one forward call per incoming point.
It prints points/s and windows/s for each, the FLOP ceiling it measures, and one line of ratios.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import bootstrap, fresh, median_rate, produce_file, stream_file, table, timed, train_small
from kafka import KafkaConsumer

from monitor.config import parse_config
from monitor.engine.detector import DetectorSettings
from monitor.formats.native import decode_json
from monitor.models import TorchScorer
from monitor.service.daemon import build_service
from monitor.synthetic import StreamSpec


def flops_per_window(window: int, hidden: int, features: int = 1) -> float:
    return window * (10 * hidden * features + 24 * hidden * hidden)


def matmul_gflops(threads: int, n: int = 1024, repeats: int = 10) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    count, seconds = timed(lambda: sum(1 for _ in range(repeats) if torch.mm(a, b) is not None))
    torch.set_num_threads(1)
    return 2 * n**3 * count / seconds / 1e9


def raw_consume(server: str, topic: str, total: int) -> tuple[int, float]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=server, group_id=fresh("raw"), auto_offset_reset="earliest",
        enable_auto_commit=False, max_poll_records=2000,
    )  # fmt: skip
    seen = points = 0
    started = None
    while seen < total:
        for records in consumer.poll(timeout_ms=500).values():
            started = started or time.perf_counter()
            for r in records:
                decoded = decode_json(r.value, r.timestamp / 1000.0)
                points += len(decoded) if isinstance(decoded, list) else 0
            seen += len(records)
    seconds = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return points, seconds


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


def daemon_loop(
    server: str,
    topic: str,
    model: Path,
    window: int,
    stride: int,
    limit: int,
    overlap: bool = True,
    checkpoint: bool = True,
    backend: str = "torch",
) -> tuple[int, int, float]:
    """`monitor run` as shipped (`build_service`: checkpoints, model reload, HTTP endpoint) over `limit`
    records; returns (points, windows, seconds from the first record to the last commit)."""
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": server, "metrics_topic": topic, "group_id": fresh("e2e"),
                "alert_topic": fresh("alerts"), "dead_letter_topic": fresh("dlq"),
            },
            "exporter": {"listen": "127.0.0.1:0"},
            "scoring": {"overlap": overlap, "backend": backend},
            "checkpoint": {"enabled": checkpoint},
            "detectors": [{"window": window, "stride": stride, "model": {"path": str(model)}}],
        }
    )  # fmt: skip
    service, release = build_service(config)
    read, started, polled = service.source.poll, [], [0]

    def poll() -> list:
        if polled[0] >= limit:
            service.stop.set()
            return []
        messages = read()
        if messages and not started:
            started.append(time.perf_counter())
        polled[0] += len(messages)
        return messages

    service.source.poll = poll  # type: ignore[method-assign]
    summary = service.run()
    seconds = time.perf_counter() - started[0]
    release()
    return summary.points, summary.windows_scored, seconds


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--points", type=int, default=2000, help="points per series")
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument(
        "--stride",
        type=int,
        default=DetectorSettings().stride,
        help="the second stride measured in (c) (default: the shipped one)",
    )
    parser.add_argument("--stride1-records", type=int, default=200_000, help="records read at stride 1")
    args = parser.parse_args()

    server = bootstrap()
    model = train_small(args.window, args.hidden, latent=16)
    scorer = TorchScorer.from_path(model)
    spec = StreamSpec(series=args.series, points=args.points, healthy=args.points // 2, anomalous_series=0)
    path = Path(model).parent / "stream.tsv"
    total = stream_file(spec, path)
    topic = fresh("metrics")
    print(f"producing {total:,} records ({args.series} series) to {topic} with kcat ...", flush=True)
    produce_file(server, topic, path)

    gf1, gf2 = matmul_gflops(1), matmul_gflops(2)
    fpw = flops_per_window(args.window, args.hidden)
    ceiling = gf2 * 1e9 / fpw
    print("measuring raw consume, scorer, daemon loop, naive loop ...", flush=True)
    raw_points, raw_s = raw_consume(server, topic, total)
    raw = raw_points / raw_s
    scorer_rate = scorer_alone(scorer, args.window)
    backend_rates = backends(model, args.window)
    p1, w1, s1 = daemon_loop(server, topic, model, args.window, 1, min(args.stride1_records, total))
    pd, wd, sd = daemon_loop(server, topic, model, args.window, args.stride, total)
    ps, ws, ss = daemon_loop(server, topic, model, args.window, args.stride, total, overlap=False)
    naive_rate = naive(scorer, args.window)

    rows = [
        ("measurement", "points/s", "windows/s"),
        ("(a) raw consume + decode", f"{raw:,.0f}", "-"),
        ("(b) scorer alone, batch 256", "-", f"{scorer_rate:,.0f}"),
        *(
            (f"(b) batch {b}, {t} thread{'s' * (t > 1)}: torch | onnx", "-", f"{r[0]:,.0f} | {r[1]:,.0f}")
            for (t, b), r in backend_rates.items()
        ),
        ("(c) daemon loop, stride 1", f"{p1 / s1:,.0f}", f"{w1 / s1:,.0f}"),
        (f"(c) daemon loop, stride {args.stride}", f"{pd / sd:,.0f}", f"{wd / sd:,.0f}"),
        (f"(c) daemon loop, stride {args.stride}, overlap off", f"{ps / ss:,.0f}", f"{ws / ss:,.0f}"),
        ("(d) naive, one forward per point", f"{naive_rate:,.0f}", f"{naive_rate:,.0f}"),
    ]
    print(table(rows))
    print(
        f"FLOP ceiling: matmul {gf1:.1f} GFLOP/s on 1 thread, {gf2:.1f} on 2; "
        f"F = W*(10*h*d + 24*h^2) = {fpw / 1e6:.2f} MFLOP/window -> {ceiling:,.0f} windows/s"
    )
    print(
        f"ratios: e2e_stride1/scorer={w1 / s1 / scorer_rate:.2f} "
        f"e2e_default/raw_consume={pd / sd / raw:.2f} "
        f"e2e_stride1/naive={p1 / s1 / naive_rate:.1f} e2e_default/naive={pd / sd / naive_rate:.1f} "
        f"e2e_stride1/flop_ceiling={w1 / s1 / ceiling:.2f} overlap_on/off={pd / sd / (ps / ss):.2f} "
        + " ".join(f"onnx/torch_b{b}_t{t}={r[1] / r[0]:.2f}" for (t, b), r in backend_rates.items())
    )


if __name__ == "__main__":
    main()
