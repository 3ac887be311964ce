"""Brokers of the fault tests' own (never the shared one on 9092), and helpers to watch daemons through faults.

Each `OwnKafka` runs `deploy/kafka/kafka.sh` with its own KAFKA_HOME_DIR and free ports, sharing the jars
already fetched into deploy/kafka/.cache/libs, so stopping or killing it touches nothing else.
"""

from __future__ import annotations

import base64
import os
import random
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from monitor.config import load_config
from monitor.formats.native import decode_json
from monitor.records import format_ts
from monitor.service.daemon import build_engine

from .conftest import ROOT, Daemon, TopicReader, Topics, stream_messages, write_config

KAFKA_SH = ROOT / "deploy/kafka/kafka.sh"
SHARED_LIBS = ROOT / "deploy/kafka/.cache/libs"
SASL_USER, SASL_PASSWORD = "monitor", "pw-" + uuid.uuid4().hex[:12]
DEBUG = ("--log-level", "DEBUG")
"""Daemons started with these log every window they score (`scored detector=… series=… end=…`)."""
SCORED = re.compile(r"scored detector=(\S+) series=(\S+) end=(\S+)")


def reference(config: Path) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(alert_id, status) pairs and (series, window end) pairs of one uninterrupted pass over the stream."""
    engine = build_engine(load_config(config))
    points = [p for _, raw in stream_messages() for p in decode_json(raw)]
    outcome = engine.process(points)
    return {(a.alert_id, a.status) for a in outcome.alerts}, {(v.series, format_ts(v.ts)) for v in outcome.verdicts}


def scored_windows(*daemons: Daemon) -> Counter[tuple[str, str]]:
    """How often each (series, window end) was scored, from the DEBUG logs of these daemons."""
    return Counter((m[1], m[2]) for d in daemons for m in SCORED.findall(d.output()))


EPHEMERAL_FLOOR = 32768
"""Linux hands out client ports from here up: a broker port picked there can be taken by some client's
connection before the broker binds it, so test brokers listen below."""


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (kafka.sh numbers the nodes of a cluster that way),
    below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, EPHEMERAL_FLOOR - count)
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class OwnKafka:
    home: Path
    mode: str = "single"
    nodes: int = 1

    def __post_init__(self) -> None:
        """One block of free ports: brokers, then controllers, then the SASL listener or the two TLS ones
        (never overlapping)."""
        extra = {"sasl": 1, "ssl": 2}.get(self.mode, 0)
        self.port = free_ports(2 * self.nodes + extra)
        self.controller_port = self.port + self.nodes
        self.sasl_port = self.port + 2 * self.nodes if self.mode == "sasl" else None
        self.ssl_port = self.port + 2 * self.nodes if self.mode == "ssl" else None

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + i}" for i in range(self.nodes))

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def tls_bootstrap(self) -> str:
        """The TLS listener (the broker proves who it is); `mtls_bootstrap` also asks the client to."""
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def mtls_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port + 1}" if self.ssl_port else ""

    @property
    def tls_dir(self) -> Path:
        """ca.pem, client.pem and client.key, made by kafka.sh in KAFKA_MODE=ssl."""
        return self.home / "tls"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "KAFKA_MODE": self.mode,
            "KAFKA_HOME_DIR": str(self.home),
            "KAFKA_LIBS_DIR": str(SHARED_LIBS),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_HEAP_OPTS": "-Xmx384m -Xms128m",
            # Test brokers live for a minute: the C1 compiler alone starts them a third faster, and a
            # cluster id of our own saves a JVM run.
            "KAFKA_JVM_OPTS": "-XX:TieredStopAtLevel=1",
            "KAFKA_CLUSTER_ID": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),
        }
        if self.sasl_port:
            env.update(KAFKA_SASL_PORT=str(self.sasl_port), KAFKA_SASL_USERS=f"{SASL_USER}:{SASL_PASSWORD}")
        if self.ssl_port:
            env.update(KAFKA_SSL_PORT=str(self.ssl_port))
        return env

    def run(self, *args: str, **env: str) -> None:
        subprocess.run(["bash", str(KAFKA_SH), *args], env={**self.env(), **env}, check=True, stdout=subprocess.DEVNULL)

    def discard(self) -> None:
        """Stop without the clean shutdown: its data is thrown away anyway."""
        self.run("stop", KAFKA_STOP_TIMEOUT="0")


@contextmanager
def own_kafka(home: Path, mode: str = "single", nodes: int = 1) -> Iterator[OwnKafka]:
    """Start it (the shared broker's jars must be fetched: the session's `bootstrap` fixture does that)."""
    kafka = OwnKafka(home, mode, nodes)
    kafka.run("start")
    try:
        yield kafka
    finally:
        kafka.discard()


_SASL_KAFKA: list[OwnKafka] = []


def sasl_kafka(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> OwnKafka:
    """One single-node broker with PLAINTEXT and SASL listeners for the whole session, shared by the outage
    and the security tests (started once, stopped when the session ends)."""
    if not _SASL_KAFKA:
        kafka = OwnKafka(tmp_path_factory.mktemp("kafka-sasl"), mode="sasl")
        kafka.run("start")
        request.config.add_cleanup(kafka.discard)
        _SASL_KAFKA.append(kafka)
    return _SASL_KAFKA[0]


def make_topics(bootstrap: str, partitions: int = 3, **client: object) -> Topics:
    tag = uuid.uuid4().hex[:10]
    t = Topics(f"rs-metrics-{tag}", f"rs-alerts-{tag}", f"rs-dlq-{tag}", f"rs-group-{tag}")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **client)
    admin.create_topics([NewTopic(t.metrics, partitions, -1)])
    admin.close()
    return t


def daemon_config(path: Path, topics: Topics, model: Path, checkpoint: dict | None = None, **kafka: object) -> Path:
    """The fault tests' daemons: failover within seconds (the shortest session the broker allows)."""
    settings = {
        "metrics_topic": topics.metrics,
        "alert_topic": topics.alerts,
        "dead_letter_topic": topics.dead_letter,
        "group_id": topics.group,
        "session_timeout_ms": 6000,
        "max_poll_records": 200,
        **kafka,
    }
    return write_config(path, {"kafka": settings, **({"checkpoint": checkpoint} if checkpoint else {})}, model)


def serve_until_resolved(daemon: Daemon, bootstrap: str, alert_topic: str) -> None:
    """Let the daemon run until an alert of the stream resolves on `alert_topic`, then stop it, which must
    exit 0; it is killed whatever happens."""
    try:
        reader = TopicReader(bootstrap, alert_topic)
        reader.read_until(lambda records: any(b'"resolved"' in r.value for r in records), 90, daemon)
        reader.close()
        assert daemon.stop() == 0
    finally:
        kill(daemon)


def readyz(daemon: Daemon) -> tuple[int, str]:
    """The HTTP status and body of /readyz (0 while nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/readyz", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def kill(daemon: Daemon) -> None:
    """SIGKILL, if it still runs: no flush, no commit, like a crash or an OOM kill."""
    if daemon.proc.poll() is None:
        daemon.proc.kill()
        daemon.proc.wait()


def committed_and_ends(bootstrap: str, topics: Topics, **client: object) -> tuple[dict[int, int], dict[int, int]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **client)
    offsets = admin.list_group_offsets(topics.group)[topics.group]
    admin.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **client)
    partitions = [TopicPartition(topics.metrics, p) for p in consumer.partitions_for_topic(topics.metrics)]
    ends = consumer.end_offsets(partitions)
    consumer.close()
    committed = {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topics.metrics and m.offset > 0}
    return committed, {tp.partition: offset for tp, offset in ends.items() if offset > 0}


def all_committed(bootstrap: str, topics: Topics) -> bool:
    committed, ends = committed_and_ends(bootstrap, topics)
    return committed == ends


def produce_spread(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], partitions: int = 3, rate: float = 0.0
) -> None:
    """Like `produce`, but series i goes to partition i % `partitions`, so every partition has some (key
    hashing puts the four test series on two of three partitions); with `rate`, that many per second."""
    order = {key: i % partitions for i, key in enumerate(dict.fromkeys(key for key, _ in messages))}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    started = time.monotonic()
    for n, (key, value) in enumerate(messages):
        if rate and n % 20 == 0:
            time.sleep(max(started + n / rate - time.monotonic(), 0.0))  # pacing a stream, not waiting for one
        producer.send(topic, key=key, value=value, partition=order[key])
    producer.flush()
    producer.close()


def expected_windows(points_per_series: int, series: int, window: int, stride: int) -> int:
    """Windows a clean stream yields: the first when the window fills, then one every `stride` points."""
    return series * (1 + (points_per_series - window) // stride)
