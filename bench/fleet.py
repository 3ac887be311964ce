"""Fleet: many series the model never saw, through the real broker and daemon; prints false alerts per
1,000 series-hours, injected anomalies found, and the daemon's memory and file descriptors over time.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 python bench/fleet.py [--series 500] [--rate 2000] [--minutes 2]
        [--spiked 5] [--train-series 20] [--epochs N] [--seed 0] [--model DIR] [--config FILE]
        [--backlog | --engine]

A model is trained with the shipped config on `--train-series` series `s0..`, each `sin(i/30 + phase) +
N(0, 0.05)` at 10 s steps (1,500 points), as `monitor train` would train it (`--epochs` caps the training
for a quicker run: such a model reconstructs less well, its errors are noisier and its thresholds wider,
so it pages less often on healthy series than the one users deploy). The daemon (`monitor run`, shipped detector
settings) then reads `--series` NEW series `h0..` of the same generator with other phases, produced at
`--rate` points per second in total for `--minutes` (data time advances 10 s per point of a series, so the
stream is time-compressed). `--spiked` of them get a spike (+3 for 3 points) at 80% of their points.

False alerts: firing alerts on series without a spike, and on spiked series before their spike; they are
given per 1,000 series-hours of data (points × 10 s) and of wall time (what the issue quotes). An injected
spike is found when its series fires within 20 points after it. A new series can alert only after
`window - 1 + model.online_warmup + threshold.warmup` points (303 with the shipped config): keep
rate × minutes × 60 / series well above that, or the run measures only warm-ups.

The resource table's `input` column says whether points were still being produced (`flowing`), all were
produced but not yet committed (`draining`: the commit follows the state checkpoints, spread over
`checkpoint.max_replay_s`, 60 s, so a run ends about a minute after the last point is produced), or all
were committed (`consumed`). The RSS line gives the daemon's resident memory while points flowed (first and
last sample, and its change over the second half of that time: none for a daemon whose memory is flat
after its warm-up), and once all were committed.

With `--backlog` the same stream is produced in full before the daemon starts, which then reads it as fast
as it can: the same points and verdicts in a fraction of the wall time, so resident memory that grows with
the points shows in both runs and memory that grows with the wall time only in the paced one.

With `--engine` the same stream goes through the daemon's own engine (`build_engine`, the shipped config)
in this process instead, in polls of `kafka.max_poll_records`, without a broker or a daemon: the same
verdicts in about a minute of replay, so the false alerts can be counted over several `--seed`s (each its
own model and stream); no memory or file descriptor figures then. It also prints the tail that the false
alerts come from, measured over every judged window of the series without a spike (millions, against a
handful of alerts): how often the judged score was above its threshold, above `alerting.confirm_ratio` ×
it (where a run fires at once), and the score / threshold that one window in 10^4 and in 10^5 exceeds.
A rule that cuts that tail cuts the false alerts, and the tail is measured far more precisely than they
are.

`--model DIR` scores with a model store that an earlier run of the same `--seed` and `--train-series`
trained (its work directory's `model`) instead of training one: the same stream is drawn either way.
`--config FILE` trains and runs with another config than the shipped `config.yaml` (its first detector;
topics, group, model path and exporter port are set by the benchmark), to measure a variant of it.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import yaml
from common import ROOT, bootstrap, consumed, fresh, read_all, table
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from monitor.config import load_config
from monitor.engine.verdicts import Outcome
from monitor.models import SeriesData, save_artifact, train_model
from monitor.records import Point, encode_point, parse_time
from monitor.training.options import training_options

STEP_S = 10.0
TRAIN_POINTS = 1500
SPIKE, SPIKE_POINTS, FOUND_WITHIN = 3.0, 3, 20
START_TS = 1_767_225_600.0
PARTITIONS = 4
WARNING = re.compile(rb"^\S+ \S+ WARNING (\S+):", re.M)


def sine(phase: float, start: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """The issue's generator: sin(i/30 + phase) + N(0, 0.05)."""
    i = np.arange(start, start + count)
    return np.sin(i / 30 + phase) + rng.normal(0.0, 0.05, count)


def training_data(series: int, rng: np.random.Generator) -> dict[str, SeriesData]:
    """s0..s{series-1}, `TRAIN_POINTS` each, ending where the new series start."""
    ts = START_TS - STEP_S * TRAIN_POINTS + STEP_S * np.arange(TRAIN_POINTS)
    phases = rng.uniform(0, 2 * np.pi, series)
    return {f"s{k}": SeriesData(ts, sine(phase, 0, TRAIN_POINTS, rng)[:, None]) for k, phase in enumerate(phases)}


def train(work: Path, data: dict[str, SeriesData], epochs: int | None, base: Path) -> Path:
    """The model of `base`'s first detector, trained on `data` (with `epochs` at most, if given); returns
    the store."""
    detector = load_config(base).detectors[0]
    started = time.monotonic()
    options = training_options(detector, epochs=detector.training.epochs if epochs is None else epochs)
    model, metadata = train_model(data, ["value"], options, progress=False)
    store = work / "model"
    save_artifact(model, metadata, store)
    print(f"trained {metadata.version} on {len(data)} series in {time.monotonic() - started:.0f}s: {store}", flush=True)
    return store


def write_config(work: Path, model: Path, base: Path) -> Path:
    """`base` with fresh topics and group, this model, and the exporter on a free port."""
    doc = yaml.safe_load(base.read_text())
    tag = fresh("fleet")
    doc["kafka"] |= {"metrics_topic": f"{tag}-metrics", "alert_topic": f"{tag}-alerts", "group_id": tag}
    doc["kafka"]["dead_letter_topic"] = f"{tag}-dlq"
    doc["exporter"]["listen"] = "127.0.0.1:0"
    doc["detectors"][0]["model"]["path"] = str(model)
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def produce(server: str, topic: str, values: np.ndarray, rate: float, done: threading.Event) -> None:
    """Point i of every series, then point i + 1, ..., paced at `rate` points per second in total."""
    producer = KafkaProducer(bootstrap_servers=server, acks="all", linger_ms=20)
    started, sent = time.monotonic(), 0
    for i in range(values.shape[1]):
        ts = START_TS + STEP_S * i
        for k in range(values.shape[0]):
            if sent % 100 == 0:
                time.sleep(max(started + sent / rate - time.monotonic(), 0.0))
            name = f"h{k}"
            producer.send(topic, key=name.encode(), value=encode_point(Point(name, ts, {"value": float(values[k, i])})))
            sent += 1
    producer.flush()
    producer.close()
    done.set()


def usage(pid: int) -> tuple[float, int, int]:
    """Resident MiB, open file descriptors and threads of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def sample(pid: int, at_s: float, input_state: str) -> tuple[str, ...]:
    """A row of the resource table; `input_state`: "flowing" while points are produced, "draining" until the
    daemon committed every point, "consumed" after."""
    rss, fds, threads = usage(pid)
    return f"{at_s:.0f}", f"{rss:.1f}", str(fds), str(threads), input_state


def growth(samples: list[tuple[str, ...]]) -> str:
    """Resident memory while points were produced (first and last sample, and the change over the second
    half of that time: none for a daemon whose memory is flat after its warm-up), and once all were
    committed. Once the input stops, memory the daemon uses while points come in is given back, so samples
    taken then say nothing about growth."""
    flowing = [(float(row[0]), float(row[1])) for row in samples[1:] if row[4] == "flowing"]
    after = float(samples[-1][1])
    if len(flowing) < 2:
        return f"{after:.1f} MiB at the end (too few samples while points flowed)"
    end_s = flowing[-1][0]
    half = [rss for at, rss in flowing if at >= end_s / 2]
    return (
        f"{flowing[0][1]:.1f} -> {flowing[-1][1]:.1f} MiB while points flowed; {half[-1] - half[0]:+.1f} MiB over "
        f"the second half of that ({end_s / 2:.0f} to {end_s:.0f} s); {after:.1f} MiB once all were committed"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=500, help="new series, never seen in training")
    parser.add_argument("--rate", type=float, default=2000.0, help="points per second, all series together")
    parser.add_argument("--minutes", type=float, default=2.0, help="how long the stream is produced")
    parser.add_argument("--spiked", type=int, default=5, help="new series that get a spike at 80%% of their points")
    parser.add_argument("--train-series", type=int, default=20)
    parser.add_argument("--epochs", type=int, help="at most (default: the shipped config's training.epochs)")
    parser.add_argument("--sample-s", type=float, default=15.0, help="seconds between resource samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backlog", action="store_true", help="produce the whole stream before the daemon starts")
    parser.add_argument("--engine", action="store_true", help="replay the stream through the engine in-process")
    parser.add_argument("--model", type=Path, help="a model store trained by an earlier run of this --seed")
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml", help="the config to train and run")
    args = parser.parse_args()
    if args.engine and args.backlog:
        parser.error("--backlog is for a run through the broker; --engine runs without one")
    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="fleet-"))
    server = "" if args.engine else bootstrap()
    data = training_data(args.train_series, rng)  # drawn with or without --model: the same stream follows
    config = write_config(work, args.model or train(work, data, args.epochs, args.config), args.config)
    k = load_config(config).kafka
    points = max(int(args.rate * args.minutes * 60 / args.series), 1)
    values = np.stack([sine(rng.uniform(0, 2 * np.pi), TRAIN_POINTS, points, rng) for _ in range(args.series)])
    spike_at = int(points * 0.8)
    spiked = [f"h{k}" for k in range(args.spiked)]
    values[: args.spiked, spike_at : spike_at + SPIKE_POINTS] += SPIKE
    if args.engine:
        return replayed(args, *replay(config, values, spiked), points, spike_at, spiked)
    admin = KafkaAdminClient(bootstrap_servers=server)
    admin.create_topics([NewTopic(k.metrics_topic, PARTITIONS, 1)])
    admin.close()

    done = threading.Event()
    rate = math.inf if args.backlog else args.rate
    producer = threading.Thread(target=produce, args=(server, k.metrics_topic, values, rate, done), daemon=True)
    pace = "unpaced, before the daemon starts" if args.backlog else f"at {args.rate:.0f}/s"
    print(f"producing {args.series} series x {points} points {pace}; work dir {work}", flush=True)
    if args.backlog:
        producer.run()
    log = work / "daemon.log"
    env = {**os.environ, "MONITOR_KAFKA_BOOTSTRAP_SERVERS": server, "PYTHONUNBUFFERED": "1"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "run"],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    started = time.monotonic()
    if not args.backlog:
        producer.start()
    samples = [("t s", "RSS MiB", "open fds", "threads", "input")]
    next_sample = started + args.sample_s  # not at 0 s: the daemon is still importing torch
    while not (done.is_set() and consumed(server, k.metrics_topic, k.group_id)):
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited with {daemon.returncode}; log: {log}")
        if time.monotonic() >= next_sample:
            samples.append(sample(daemon.pid, time.monotonic() - started, "draining" if done.is_set() else "flowing"))
            next_sample += args.sample_s
        time.sleep(0.5)
    wall_s = time.monotonic() - started
    samples.append(sample(daemon.pid, wall_s, "consumed"))
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait()
    return report(args, server, k.alert_topic, points, spike_at, spiked, samples, wall_s, code, log)


def replay(config: Path, values: np.ndarray, spiked: list[str]) -> tuple[list[tuple[str, float]], Tail]:
    """The stream through the daemon's engine in this process, in the order `produce` sends it, in polls of
    `kafka.max_poll_records`: the firing alerts, as (series, time), and the tail of the judged windows of
    the series without a spike."""
    from tqdm import tqdm

    from monitor.service.daemon import build_engine

    loaded = load_config(config)
    engine, size = build_engine(loaded), loaded.kafka.max_poll_records
    names = [f"h{k}" for k in range(values.shape[0])]
    firing: list[tuple[str, float]] = []
    tail = Tail(loaded.detectors[0].settings.alerting.confirm_ratio, set(spiked))

    def process(poll: list[Point]) -> None:
        outcome = engine.process(poll)
        firing.extend((a.series, a.at) for a in outcome.alerts if a.status == "firing")
        tail.add(outcome)

    poll: list[Point] = []
    for i in tqdm(range(values.shape[1]), desc="replay", unit="step", mininterval=5):
        ts = START_TS + STEP_S * i
        for name, value in zip(names, values[:, i].tolist(), strict=True):
            poll.append(Point(name, ts, {"value": value}))
            if len(poll) == size:
                process(poll)
                poll = []
    process(poll)
    return firing, tail


class Tail:
    """Judged score / threshold of every judged window of the series without a spike."""

    def __init__(self, confirm_ratio: float, spiked: set[str]) -> None:
        self.confirm_ratio, self.spiked = confirm_ratio, spiked
        self.ratios: list[np.ndarray] = []

    def add(self, outcome: Outcome) -> None:
        for batch in outcome.batches:
            healthy = np.fromiter((name not in self.spiked for name in batch.series), bool, len(batch.series))
            judged = healthy & ~batch.warming_up
            self.ratios.append(batch.score[judged] / batch.threshold[judged])

    def rows(self) -> list[tuple[str, str]]:
        ratios = np.concatenate(self.ratios)
        over, confirmed = np.mean(ratios > 1.0), np.mean(ratios >= self.confirm_ratio)
        far = np.quantile(ratios, [1 - 1e-4, 1 - 1e-5])
        return [
            ("judged windows", f"{len(ratios):,} (series without a spike, after their warm-ups)"),
            ("above the threshold", f"{over:.2e} of them; at or above {self.confirm_ratio} x it {confirmed:.2e}"),
            ("score / threshold", f"exceeded by 1 window in 10^4: {far[0]:.3f}, in 10^5: {far[1]:.3f}"),
        ]


def tally(firing: list[tuple[str, float]], spike_at: int, spiked: list[str]) -> tuple[int, set[str]]:
    """False alerts (on series without a spike, or before their spike) and the spiked series found."""
    spike_ts = START_TS + STEP_S * spike_at
    found = {series for series, at in firing if series in spiked and spike_ts <= at <= spike_ts + STEP_S * FOUND_WITHIN}
    return sum(1 for series, at in firing if series not in spiked or at < spike_ts), found


def replayed(
    args: argparse.Namespace,
    firing: list[tuple[str, float]],
    tail: Tail,
    points: int,
    spike_at: int,
    spiked: list[str],
) -> int:
    """The figures of an `--engine` run."""
    false, found = tally(firing, spike_at, spiked)
    data_hours = args.series * points * STEP_S / 3600
    print(f"  seed {args.seed}: {args.series * points:,} points ({args.series} new series x {points}); "
          f"{len(firing)} firing alerts, on {len({s for s, _ in firing})} series; {false} false: "
          f"{1000 * false / data_hours:.2f} per 1,000 series-hours of data ({data_hours:,.0f}); "
          f"injected spikes found {len(found)}/{len(spiked)}")  # fmt: skip
    print("\n".join(f"  {name}: {value}" for name, value in tail.rows()))
    return 0


def report(
    args: argparse.Namespace,
    server: str,
    alert_topic: str,
    points: int,
    spike_at: int,
    spiked: list[str],
    samples: list[tuple[str, ...]],
    wall_s: float,
    code: int,
    log: Path,
) -> int:
    firing = [a for a in (orjson.loads(r.value) for r in read_all(server, alert_topic)) if a["status"] == "firing"]
    false_count, found = tally([(a["series"], parse_time(a["at"])) for a in firing], spike_at, spiked)
    data_hours = args.series * points * STEP_S / 3600
    wall_hours = args.series * wall_s / 3600
    warnings = WARNING.findall(log.read_bytes())
    print(table(samples))
    rows = [
        ("points", f"{args.series * points:,} ({args.series} new series x {points}) in {wall_s:.0f}s"),
        ("firing alerts", f"{len(firing)}, on {len({a['series'] for a in firing})} series"),
        ("false alerts", f"{false_count}: {1000 * false_count / data_hours:.1f} per 1,000 series-hours of data "
         f"({data_hours:,.0f}), {1000 * false_count / wall_hours:.1f} per 1,000 series-hours of wall time"),
        ("injected spikes found", f"{len(found)}/{len(spiked)}"),
        ("RSS", growth(samples)),
        ("open fds", f"{samples[1][2]} -> {samples[-1][2]}; threads {samples[-1][3]}"),
        ("daemon", f"exit {code} on SIGTERM; {len(warnings)} WARNING lines in its log "
         f"({', '.join(sorted(set(w.decode() for w in warnings))) or 'none'}); log {log}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"  {name.ljust(width)}  {value}" for name, value in rows))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
