"""Soak: a long stream with injected faults through real daemons; prints what went in, out and got lost.

    python bench/soak.py [--seconds 90] [--rate 300] [--series 8] [--replicas 2] [--kill-every 10] [--bad-every 97]
                         [--feedback-every 2] [--client kafka-python|confluent-kafka]

It runs a broker of its own (deploy/kafka/kafka.sh with its own home and ports, the shared jars), so the
broker can be stopped half-way; trains a small model in seconds; produces the stream at a steady rate for
`--seconds` with a malformed record every `--bad-every` records; meanwhile it judges every alert that fires
as a true positive on the feedback topic and, every `--feedback-every` seconds, sends a malformed feedback
message and a false positive for an alert id that does not exist (neither may change an alert); runs
`--replicas` daemons in one consumer group and every `--kill-every` seconds kills one (SIGKILL, every
third time SIGTERM) and starts it again.
At the end the alerts on the topic are compared with one uninterrupted in-process pass over the same points
(same code, same models), and the windows the daemons logged as scored with the windows of that pass.
Besides the univariate series, two entities (`entity_label: host`, features f0 and f1) go through an entity
detector, so its checkpoint and restore face the same faults.
The verdicts the daemons logged as taken are compared with those sent. Exit status 1 when an alert, a window
or a verdict was lost. Longer soaks: `--seconds 3600`. `--client` is the daemons' `kafka.client` (the
soak's own producers and readers stay kafka-python: they are the test's side, not the monitor's).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import yaml
from common import ROOT, consumed, read_all, train_small
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from monitor.config import load_config
from monitor.config.kafka import CLIENTS
from monitor.records import Point, encode_point, format_ts
from monitor.service.daemon import build_engine
from monitor.synthetic import StreamSpec, generate, points

BAD = [
    b"\xff\xfe not utf-8",
    b"{not json",
    b'{"series": "host-00/cpu", "ts": 1767225600, "value": "high"}',
    b'{"series": "host-00/cpu", "ts": 1767225600, "value": NaN}',
    b'{"ts": 1767225600, "value": 1}',
    b'{"series": "host-00/cpu", "ts": 1767225600000, "value": 1}',
    b"[]",
]
BAD_FEEDBACK = [
    (b"host-00/cpu", b"{not json"),
    (b"host-00/cpu", b'{"alert_id": "0", "verdict": "maybe"}'),
    (b"host-00/cpu", b'{"verdict": "true_positive"}'),
    (None, b'{"alert_id": "0", "verdict": "true_positive"}'),
]
"""Feedback the daemons must dead-letter: not JSON, an unknown verdict, no alert id, no key."""
SCORED = re.compile(rb"scored detector=\S+ series=(\S+) end=(\S+)")
TAKEN = re.compile(rb"feedback detector=\S+ series=\S+ alert_id=(\S+) verdict=(\S+)")
WINDOW, STRIDE, PARTITIONS = 16, 2, 3
ENTITIES = 2
"""Hosts `ent-NN` whose series `ent-NN/f0` and `ent-NN/f1` an entity detector (`entity_label: host`) joins."""


def free_ports(count: int) -> list[int]:
    """Ports free right now, distinct (the sockets are held together while the kernel picks)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Broker:
    """A single node of the soak's own, restartable without touching the shared broker."""

    def __init__(self, home: Path) -> None:
        self.port, controller = free_ports(2)
        self.env = {
            **os.environ,
            "KAFKA_HOME_DIR": str(home),
            "KAFKA_LIBS_DIR": str(ROOT / "deploy/kafka/.cache/libs"),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(controller),
        }
        self.bootstrap = f"127.0.0.1:{self.port}"

    def run(self, command: str, **env: str) -> None:
        script = str(ROOT / "deploy/kafka/kafka.sh")
        subprocess.run(["bash", script, command], env={**self.env, **env}, check=True, stdout=subprocess.DEVNULL)


class Replica:
    """`monitor run` at DEBUG, so its log names every window it scored."""

    def __init__(self, config: Path, bootstrap: str, log: Path) -> None:
        env = {**os.environ, "MONITOR_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "monitor", "--log-level", "DEBUG", "--config", str(config), "run"]
        self.log = log
        self.proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)


def stream(series: int, seconds: float, rate: float, bad_every: int) -> tuple[list[tuple[int, bytes]], list[Point]]:
    """(partition, value) records in time order with malformed ones mixed in, and the good points."""
    steps = max(int(seconds * rate / series), 4 * WINDOW)
    spec = StreamSpec(series=series, points=steps, healthy=steps // 3, anomalous_series=series // 2, period=24)
    values, _ = generate(spec)
    good = sorted([*points(spec, values), *entity_points(spec, values)], key=lambda p: p.ts)  # stable: in step
    records = []
    for i, point in enumerate(good):
        records.append((int(point.labels["host"][-2:]) % PARTITIONS, encode_point(point)))
        if (i + 1) % bad_every == 0:
            records.append((i % PARTITIONS, BAD[(i // bad_every) % len(BAD)]))
    return records, good


def entity_points(spec: StreamSpec, values: np.ndarray) -> list[Point]:
    """Two features per entity host, from the (anomalous) first series, keyed like the host's partition."""
    out = []
    for step in range(spec.points):
        ts = spec.start_ts + spec.step_s * step
        for e in range(ENTITIES):
            host = f"ent-{e:02d}"
            for j in range(2):
                value = round(float(values[(e + j) % spec.series, step]), 6)
                out.append(Point(f"{host}/f{j}", ts, {"value": value}, {"host": host}))
    return out


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]], rate: float, done: threading.Event) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    started = time.monotonic()
    for n, (partition, value) in enumerate(records):
        if n % 50 == 0:
            time.sleep(max(started + n / rate - time.monotonic(), 0.0))
        producer.send(topic, value=value, partition=partition)
    producer.flush()
    producer.close()
    done.set()


class Feedback:
    """Judges the alerts as they fire and sends bad feedback meanwhile; keeps what the broker acknowledged."""

    def __init__(self, bootstrap: str, alert_topic: str, topic: str, every: float) -> None:
        self.bootstrap, self.alert_topic, self.topic, self.every = bootstrap, alert_topic, topic, every
        self.sent: set[tuple[str, str]] = set()
        self.bad = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        alerts = KafkaConsumer(self.alert_topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest")
        n, next_bad = 0, time.monotonic() + self.every
        while not self.stop.is_set():
            for batch in alerts.poll(timeout_ms=500).values():
                for alert in (orjson.loads(r.value) for r in batch):
                    if alert["status"] == "firing":
                        self._send(producer, alert["series"], alert["alert_id"], "true_positive")
            if time.monotonic() >= next_bad:
                key, value = BAD_FEEDBACK[n % len(BAD_FEEDBACK)]
                self.bad += self._deliver(producer, key, value, n % PARTITIONS)
                self._send(producer, "host-01/cpu", f"{n:024x}", "false_positive")  # no such alert
                n, next_bad = n + 1, time.monotonic() + self.every
        producer.close()
        alerts.close()

    def _send(self, producer: KafkaProducer, series: str, alert_id: str, verdict: str) -> None:
        value = orjson.dumps({"alert_id": alert_id, "verdict": verdict, "by": "soak"})
        if self._deliver(producer, series.encode(), value, int(series[5:7]) % PARTITIONS):
            self.sent.add((alert_id, verdict))

    def _deliver(self, producer: KafkaProducer, key: bytes | None, value: bytes, partition: int) -> bool:
        """Send to the partition of the series (the stream is partitioned so); False if not acknowledged
        (the broker may be stopped right now)."""
        try:
            producer.send(self.topic, key=key, value=value, partition=partition).get(10)
        except Exception:
            return False
        return True


def write_config(path: Path, model: Path, entity_model: Path, tag: str, client: str) -> Path:
    kafka = {"client": client, "metrics_topic": f"soak-metrics-{tag}", "alert_topic": f"soak-alerts-{tag}"}
    kafka |= {"dead_letter_topic": f"soak-dlq-{tag}", "group_id": f"soak-{tag}", "session_timeout_ms": 6000}
    detector = {"name": "default", "window": WINDOW, "stride": STRIDE, "threshold": {"warmup": 8}}
    detector |= {"model": {"path": str(model), "hidden": 16, "latent": 8}, "alerting": {"for": 2, "resolve_after": 3}}
    entity = {**detector, "name": "entity", "series": "ent-*", "entity_label": "host", "features": ["f0", "f1"]}
    entity["model"] = {**detector["model"], "path": str(entity_model)}
    detectors = [entity, detector]
    doc = {"kafka": kafka | {"max_poll_records": 50}, "exporter": {"listen": "127.0.0.1:0"}, "detectors": detectors}
    path.write_text(yaml.safe_dump(doc))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="how long the stream is produced")
    parser.add_argument("--series", type=int, default=8)
    parser.add_argument("--rate", type=float, default=300.0, help="records per second")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds between daemon kills")
    parser.add_argument("--bad-every", type=int, default=97, help="one malformed record per this many")
    parser.add_argument("--feedback-every", type=float, default=2.0, help="seconds between bad feedback messages")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--client", choices=CLIENTS, default="kafka-python", help="the daemons' kafka.client")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    broker = Broker(work / "kafka")
    broker.run("start", KAFKA_JVM_OPTS="-XX:TieredStopAtLevel=1")
    try:
        return soak(args, rng, work, broker)
    finally:
        broker.run("reset", KAFKA_STOP_TIMEOUT="0")  # its topics go; the replicas' logs stay in `work`


def soak(args: argparse.Namespace, rng: random.Random, work: Path, broker: Broker) -> int:
    b = broker.bootstrap
    model = train_small(window=WINDOW, hidden=16, latent=8)
    entity_model = train_small(window=WINDOW, hidden=16, latent=8, features=2)
    config = write_config(work / "config.yaml", model, entity_model, f"{args.seed}-{os.getpid()}", args.client)
    k = load_config(config).kafka
    admin = KafkaAdminClient(bootstrap_servers=b)
    topics = [NewTopic(k.metrics_topic, PARTITIONS, 1), NewTopic(k.feedback_topic, PARTITIONS, 1)]
    admin.create_topics([*topics, NewTopic(k.alert_topic, 1, 1)])  # the feedback thread follows it from the start
    admin.close()
    records, good = stream(args.series, args.seconds, args.rate, args.bad_every)
    started = time.monotonic()
    produced = threading.Event()
    threading.Thread(target=produce, args=(b, k.metrics_topic, records, args.rate, produced), daemon=True).start()
    logs: list[Path] = []

    def launch() -> Replica:
        logs.append(work / f"replica-{len(logs)}.log")
        return Replica(config, b, logs[-1])

    replicas = [launch() for _ in range(args.replicas)]
    feedback = Feedback(b, k.alert_topic, k.feedback_topic, args.feedback_every)
    feedback.thread.start()
    kills: Counter[str] = Counter()
    broker_restarted = False
    next_kill = time.monotonic() + args.kill_every
    while not (feedback.stop.is_set() and all(consumed(b, t, k.group_id) for t in (k.metrics_topic, k.feedback_topic))):
        if not feedback.stop.is_set() and produced.is_set() and consumed(b, k.metrics_topic, k.group_id):
            feedback.stop.set()  # alerts it has not read by now stay unjudged; what it sent must be taken
            feedback.thread.join()
        if time.monotonic() > started + args.seconds + 600:
            raise SystemExit("soak: the daemons did not consume the stream; logs in " + str(work))
        if not broker_restarted and time.monotonic() > started + args.seconds / 2:
            broker.run("stop")
            broker.run("start", KAFKA_JVM_OPTS="-XX:TieredStopAtLevel=1")
            broker_restarted = True
        if time.monotonic() > next_kill and not produced.is_set():
            i = rng.randrange(len(replicas))
            how = signal.SIGTERM if sum(kills.values()) % 3 == 2 else signal.SIGKILL
            replicas[i].proc.send_signal(how)
            replicas[i].proc.wait()
            kills[how.name] += 1
            replicas[i] = launch()
            next_kill = time.monotonic() + args.kill_every * rng.uniform(0.5, 1.5)
        time.sleep(0.5)
    for replica in replicas:
        replica.proc.send_signal(signal.SIGTERM)
        replica.proc.wait()
    return report(args, b, config, records, good, logs, kills, feedback, time.monotonic() - started, work)


def report(
    args: argparse.Namespace,
    bootstrap: str,
    config: Path,
    records: list[tuple[int, bytes]],
    good: list[Point],
    logs: list[Path],
    kills: Counter[str],
    feedback: Feedback,
    seconds: float,
    work: Path,
) -> int:
    k = load_config(config).kafka
    outcome = build_engine(load_config(config)).process(good)
    expected_alerts = {(a.alert_id, a.status) for a in outcome.alerts}
    expected_windows = {(v.series, format_ts(v.ts)) for v in outcome.verdicts}
    alerts = [orjson.loads(r.value) for r in read_all(bootstrap, k.alert_topic)]
    got = Counter((a["alert_id"], a["status"]) for a in alerts)
    dead = read_all(bootstrap, k.dead_letter_topic)
    dead_sources = {
        tuple(dict(r.headers)[h] for h in ("source.topic", "source.partition", "source.offset")) for r in dead
    }
    dead_feedback = sum(source[0] == k.feedback_topic.encode() for source in dead_sources)
    taken = {(a.decode(), v.decode()) for log in logs for a, v in TAKEN.findall(log.read_bytes())}
    verdicts_lost = feedback.sent - taken
    scorings = [(s.decode(), e.decode()) for log in logs for s, e in SCORED.findall(log.read_bytes())]
    scored = set(scorings)
    lost, missed = expected_alerts - set(got), expected_windows - scored
    rows = [
        ("records in", f"{len(records)} ({len(good)} points of {args.series} series and {ENTITIES} entities of 2, "
         f"{len(records) - len(good)} bad)"),
        ("records dead-lettered", f"{len(dead_sources) - dead_feedback} ({len(dead)} messages, feedback included)"),
        ("feedback in", f"{len(feedback.sent)} verdicts (true_positive on every alert fired, false_positive on "
         f"unknown ids), {feedback.bad} malformed (acknowledged sends only)"),
        ("feedback taken", f"{len(taken & feedback.sent)} verdicts, {len(verdicts_lost)} lost; {dead_feedback} "
         f"malformed dead-lettered"),
        ("windows scored", f"{len(scored)} distinct of {len(expected_windows)} expected, {len(missed)} missed; "
         f"{len(scorings)} scorings ({len(scorings) - len(scored)} again after crashes)"),
        ("alerts", f"{len(got)} distinct (alert_id, status), {len(expected_alerts)} expected; {len(alerts)} messages"),
        ("alerts lost", str(len(lost))),
        ("duplicate alert ids", f"{sum(got.values()) - len(got)} repeated messages, all with their alert_id"),
        ("unexpected alerts", str(len(set(got) - expected_alerts))),
        ("restarts survived", f"{sum(kills.values())} daemon ({kills['SIGKILL']} SIGKILL, {kills['SIGTERM']} SIGTERM)"
         " + 1 broker stop/start"),
    ]  # fmt: skip
    print(f"soak: {seconds:.0f}s, {args.replicas} replicas ({args.client}), logs in {work}")
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"  {name.ljust(width)}  {value}" for name, value in rows))
    # More dead letters than acknowledged sends is no loss: a send that timed out while the broker was
    # stopped can still be delivered by the producer's retry.
    return 1 if lost or missed or verdicts_lost or dead_feedback < feedback.bad else 0


if __name__ == "__main__":
    sys.exit(main())
