"""Record → alert latency of the real daemon through the real broker, at 50% and 90% of its maximum rate.

    python bench/latency.py [--series 1000] [--window 64] [--hidden 64] [--burst N] [--seconds 20]

Both topics stamp records with the broker's clock (`message.timestamp.type=LogAppendTime`), so the
latency of an alert is the append time of its alert record minus the append time of the metrics record
whose point completed the window that made it fire (the alert's `window.end` is that point's timestamp):
decode, windowing, scoring, threshold, alerting, produce and acknowledgement, all of it, and the time
the record waited in the topic when the daemon was behind. Producer-side delays before the append do not
count: the clock starts when the metrics record exists.

`monitor run` runs as a subprocess with the default settings (stride 1, checkpoints on). First a burst of
healthy history (`--burst` points per series) is written before the daemon starts; it reads that backlog
unpaced, and the rate between 50% and 95% of it (every point scores a window there) is its maximum
rate. The burst also fills the windows and takes every series through its warm-ups (by default it is
as long as they are: `window + model.online_warmup + threshold.warmup` points, 336; the model never saw
these series), so that the spikes of the paced runs are judged. Then, for each load, a stream paced at
that share of the maximum runs for `--seconds`, with spikes injected in a distinct share of the series.
`--set checkpoint.enabled=false` (any dotted config key, a YAML value) compares a setting in the same way.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import yaml
from common import ROOT, bootstrap, fresh, steady_after, table, train_small
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from monitor.records import Point, encode_point, format_ts
from monitor.synthetic import StreamSpec, generate, series_name

BROKER_CLOCK = {"message.timestamp.type": "LogAppendTime"}
PARTITIONS = 4
SPIKE_POINTS = 5


def make_topics(server: str, metrics: str, alerts: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=server)
    admin.create_topics(
        [
            NewTopic(metrics, PARTITIONS, 1, topic_configs=BROKER_CLOCK),
            NewTopic(alerts, 1, 1, topic_configs=BROKER_CLOCK),
        ]
    )
    admin.close()


def produce(server: str, topic: str, records: list[tuple[int, bytes, bytes]], rate: float | None) -> tuple[int, float]:
    """Send (partition, key, value) records as fast as possible (`rate` None) or paced at `rate` per second.

    The records are encoded beforehand and their partitions chosen by the caller, so the producer costs
    little CPU: it shares the machine with the daemon it measures. Returns (count, seconds).
    """
    producer = KafkaProducer(bootstrap_servers=server, linger_ms=2, acks=1)
    started, sent = time.perf_counter(), 0
    for partition, key, value in records:
        if rate is not None:
            wait = started + sent / rate - time.perf_counter()
            if wait > 0.002:
                time.sleep(wait)
        producer.send(topic, value, key, partition=partition)
        sent += 1
    producer.flush()
    producer.close()
    return sent, time.perf_counter() - started


def stream(values: np.ndarray, spec: StreamSpec, first: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of every point, step by step, all series at each step; `values[:, 0]` is step
    `first`. A series keeps its partition (its points stay in order), as the key would decide."""
    records = []
    for step in range(values.shape[1]):
        ts = spec.start_ts + spec.step_s * (first + step)
        for i in range(values.shape[0]):
            point = Point(series_name(i), ts, {"value": round(float(values[i, step]), 6)})
            records.append((i % PARTITIONS, point.series.encode(), encode_point(point)))
    return records


class Daemon:
    """`monitor run` with a generated config, and its message counter from /metrics."""

    def __init__(
        self, directory: Path, server: str, topics: dict[str, str], model: Path, window: int, overrides: list[str]
    ) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = {
            "kafka": {"bootstrap_servers": server, **topics},
            "exporter": {"listen": f"127.0.0.1:{self.port}"},
            "detectors": [{"window": window, "model": {"path": str(model)}}],
        }
        for override in overrides:
            path, _, value = override.partition("=")
            *sections, key = path.split(".")
            node = config
            for section in sections:
                node = node.setdefault(section, {})
            node[key] = yaml.safe_load(value)
        (directory / "config.yaml").write_text(yaml.safe_dump(config))
        self.log = directory / "daemon.log"
        command = [sys.executable, "-m", "monitor", "--config", str(directory / "config.yaml"), "run"]
        self.proc = subprocess.Popen(command, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)

    def messages(self) -> float:
        if self.proc.poll() is not None:
            raise SystemExit(f"the daemon exited with {self.proc.returncode}; its log: {self.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                lines = r.read().decode().splitlines()
        except OSError:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("monitor_messages_total{"))

    def wait_for(self, total: int, timeout: float) -> list[tuple[float, float]]:
        """Sample (time, messages) until the daemon has read `total` messages."""
        samples, deadline = [], time.monotonic() + timeout
        while not samples or samples[-1][1] < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"the daemon read {samples[-1][1]:.0f} of {total} messages in {timeout:.0f} s")
            samples.append((time.monotonic(), self.messages()))
            time.sleep(0.2)
        return samples

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def max_rate(samples: list[tuple[float, float]], total: int) -> float:
    """Messages/s between the first samples past 50% and 95% of the backlog (windows full, all scored)."""
    t0, n0 = next(s for s in samples if s[1] >= 0.5 * total)
    t1, n1 = next(s for s in samples if s[1] >= 0.95 * total)
    return (n1 - n0) / (t1 - t0)


def read_all(server: str, topic: str) -> Iterator:
    """Every record of `topic` from its start to its current end."""
    consumer = KafkaConsumer(bootstrap_servers=server, enable_auto_commit=False, consumer_timeout_ms=5000)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    remaining = {tp for tp in parts if ends[tp] > 0}
    while remaining:
        for tp, records in consumer.poll(timeout_ms=1000, max_records=5000).items():
            yield from records
            if consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    consumer.close()


def latencies(
    server: str, topics: dict[str, str], phases: list[tuple[int, int]], spec: StreamSpec
) -> list[list[float]]:
    """Milliseconds from metrics record append to alert record append, per phase (by the point's step)."""
    alerts = [orjson.loads(r.value) | {"appended": r.timestamp} for r in read_all(server, topics["alert_topic"])]
    wanted = {(a["series"], a["window"]["end"]): a["appended"] for a in alerts}
    names = {a["series"].encode() for a in alerts}
    found: list[list[float]] = [[] for _ in phases]
    for record in read_all(server, topics["metrics_topic"]):
        if record.key not in names:
            continue
        point = orjson.loads(record.value)
        appended = wanted.get((point["series"], format_ts(point["ts"])))
        step = round((point["ts"] - spec.start_ts) / spec.step_s)
        phase = next((i for i, (first, last) in enumerate(phases) if first <= step < last), None)
        if appended is not None and phase is not None:  # alerts in the burst (none expected) are not measured
            found[phase].append(float(appended - record.timestamp))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--burst", type=int, help="points per series read unpaced (default: the warm-ups)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each paced run")
    parser.add_argument("--loads", type=float, nargs="+", default=[0.5, 0.9])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a daemon config setting")
    args = parser.parse_args()
    args.burst = args.burst or steady_after(args.window, 1)
    if args.burst < 2 * args.window:
        parser.error("--burst must be at least twice the window: the rate is measured while every point scores")

    server = bootstrap()
    model = train_small(args.window, args.hidden, latent=16)
    topics = {"metrics_topic": fresh("metrics"), "alert_topic": fresh("alerts")}
    topics |= {"dead_letter_topic": fresh("dlq"), "group_id": fresh("latency")}
    make_topics(server, topics["metrics_topic"], topics["alert_topic"])
    spec = StreamSpec(series=args.series, points=args.burst, healthy=args.burst, anomalous_series=0)
    burst_values, _ = generate(spec)
    total = args.series * args.burst
    print(f"writing a backlog of {total:,} records ({args.series} series) to {topics['metrics_topic']} ...", flush=True)
    produce(server, topics["metrics_topic"], stream(burst_values, spec, 0), None)

    daemon = Daemon(Path(tempfile.mkdtemp(prefix="bench-latency-")), server, topics, model, args.window, args.set)
    try:
        samples = daemon.wait_for(total, timeout=600)
        top = max_rate(samples, total)
        print(f"maximum rate {top:,.0f} records/s; paced runs of {args.seconds:.0f} s ...", flush=True)
        steps = [max(8 * SPIKE_POINTS, math.ceil(load * top * args.seconds / args.series)) for load in args.loads]
        length = args.burst + sum(steps)
        spec = StreamSpec(series=args.series, points=length, healthy=length, anomalous_series=0)
        values, _ = generate(spec)  # same levels, amplitudes and phases as the burst: the series go on
        rng = np.random.default_rng(11)
        phases, first, achieved = [], args.burst, []
        for index, (load, count) in enumerate(zip(args.loads, steps, strict=True)):
            part = values[:, first : first + count].copy()
            spiked = np.arange(index, args.series, len(args.loads))  # each load spikes its own series
            starts = rng.integers(count // 10, count // 2, len(spiked))
            for i, start in zip(spiked, starts, strict=True):
                part[i, start : start + SPIKE_POINTS] += 3.0 * np.ptp(values[i, : args.burst]) / 2
            sent, seconds = produce(server, topics["metrics_topic"], stream(part, spec, first), load * top)
            achieved.append(sent / seconds)
            total += sent
            phases.append((first, first + count))
            first += count
        daemon.wait_for(total, timeout=600)
        time.sleep(2.0)  # the last alerts' acknowledgements
    finally:
        daemon.stop()

    found = latencies(server, topics, phases, spec)
    rows = [("load", "target rec/s", "sent rec/s", "alerts joined", "p50 ms", "p95 ms", "p99 ms", "max ms")]
    figures = [f"max_rate={top:,.0f}/s"]
    for load, rate, got in zip(args.loads, achieved, found, strict=True):
        p50, p95, p99 = np.percentile(got, [50, 95, 99]) if got else (math.nan,) * 3
        rows.append(
            (
                f"{load:.0%}",
                f"{load * top:,.0f}",
                f"{rate:,.0f}",
                f"{len(got)}",
                f"{p50:.0f}",
                f"{p95:.0f}",
                f"{p99:.0f}",
                f"{max(got, default=math.nan):.0f}",
            )
        )
        figures.append(f"p50_at_{load:.0%}={p50:.0f} ms p99_at_{load:.0%}={p99:.0f} ms".replace("%", "pct"))
    print(table(rows))
    print(" ".join(figures) + " (target: p99_at_50pct < 1000 ms)")


if __name__ == "__main__":
    main()
