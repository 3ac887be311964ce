"""`monitor produce`: a synthetic stream (see `monitor.synthetic`) to a file, stdout or a Kafka topic.

`--rate` paces it in points per second, so the demo shows alerts arriving live; `--steps A:B` emits
part of the stream (the healthy head for training, then the rest), and `--truth` writes the injected
anomalies as JSON for checking what the monitor found.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import asdict

import orjson

from monitor.config import KafkaSettings, load_config
from monitor.records import Point, encode_point
from monitor.synthetic import StreamSpec, generate, paced, points

HELP = "write a synthetic metric stream with injected anomalies"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = StreamSpec()
    p.add_argument("--series", type=int, default=d.series, help="number of series (default: %(default)s)")
    p.add_argument("--points", type=int, default=d.points, help="points per series (default: %(default)s)")
    p.add_argument("--healthy", type=int, default=d.healthy, help="anomaly-free head (default: %(default)s)")
    p.add_argument("--anomalous", type=int, default=d.anomalous_series, help="series with one anomaly each")
    p.add_argument("--period", type=int, default=d.period, help="season length in points")
    p.add_argument("--step", type=float, default=d.step_s, help="seconds between points of a series")
    p.add_argument("--start-ts", type=float, default=d.start_ts, help="timestamp of the first point")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", default=None, metavar="A:B", help="emit only time steps A (incl.) to B (excl.)")
    p.add_argument("--rate", type=float, default=0.0, help="points per second (default: as fast as possible)")
    p.add_argument("--truth", metavar="FILE", help="write the injected anomalies to FILE as JSON")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", metavar="FILE", help="JSON-lines file ('-' = stdout)")
    out.add_argument("--topic", help="Kafka topic (broker from the config / MONITOR_KAFKA_BOOTSTRAP_SERVERS)")


def spec_from_args(args: argparse.Namespace) -> StreamSpec:
    return StreamSpec(
        series=args.series,
        points=args.points,
        healthy=args.healthy,
        anomalous_series=args.anomalous,
        period=args.period,
        step_s=args.step,
        start_ts=args.start_ts,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    produce(args, load_config(args.config).kafka if args.topic else None)
    return 0


def produce(args: argparse.Namespace, kafka: KafkaSettings | None) -> int:
    spec = spec_from_args(args)
    values, anomalies = generate(spec)
    if args.truth:
        with open(args.truth, "wb") as f:
            f.write(orjson.dumps([asdict(a) for a in anomalies], option=orjson.OPT_INDENT_2))
    first, _, last = (args.steps or f"0:{spec.points}").partition(":")
    stream = paced(points(spec, values, int(first), int(last)), args.rate)
    if kafka is None:
        return _to_file(stream, args.out)
    from monitor.kafka.tools import produce_points

    count = produce_points(kafka, args.topic, stream)
    print(f"produced {count} points to {args.topic}", file=sys.stderr)
    return count


def _to_file(stream: Iterable[Point], path: str) -> int:
    out = sys.stdout.buffer if path == "-" else open(path, "wb")  # noqa: SIM115
    count = 0
    try:
        for point in stream:
            out.write(encode_point(point) + b"\n")
            count += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return count
