"""Fixtures for tests against the real broker and the daemon as a subprocess.

The broker is the one `deploy/kafka/kafka.sh start` runs (idempotent: started once, reused), or the one
`KAFKA_BOOTSTRAP` names. Every test gets fresh topics and a fresh consumer group; waits poll to a
deadline, never a fixed sleep.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from monitor.records import encode_point
from monitor.synthetic import StreamSpec, generate, points

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 16
SPEC = StreamSpec(series=4, points=900, healthy=450, anomalous_series=3, period=24, seed=11)


@pytest.fixture(scope="session")
def bootstrap() -> str:
    given = os.environ.get("KAFKA_BOOTSTRAP")
    if given:
        return given
    subprocess.run(["bash", str(ROOT / "deploy/kafka/kafka.sh"), "start"], check=True)
    return "127.0.0.1:9092"


@pytest.fixture(params=["kafka-python", "confluent-kafka"])
def kafka_client(request: pytest.FixtureRequest) -> str:
    """`kafka.client` for the daemon: the tests that take this fixture run once with each client."""
    return request.param


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained once, by the real `monitor train`, on the healthy head of SPEC."""
    from monitor.cli import main

    work = tmp_path_factory.mktemp("model")
    values, _ = generate(SPEC)
    data = work / "healthy.jsonl"
    data.write_bytes(b"".join(encode_point(p) + b"\n" for p in points(SPEC, values, 0, SPEC.healthy)))
    config = write_config(work / "train.yaml", {"kafka": {}}, work / "model")
    assert main(["--config", str(config), "train", "--input", str(data), "--no-progress", "--epochs", "15"]) == 0
    return work / "model"


def write_config(path: Path, overrides: dict, model: Path, listen: str = "127.0.0.1:0") -> Path:
    doc = {
        "kafka": {"poll_timeout_ms": 200, **overrides.get("kafka", {})},
        "exporter": {"listen": listen},
        "detectors": [
            {
                "name": "default",
                "window": WINDOW,
                "stride": 2,
                "model": {"path": str(model), "hidden": 16, "latent": 8},
                "threshold": {"warmup": 8},
                "alerting": {"for": 2, "resolve_after": 3},
            }
        ],
    }
    if "checkpoint" in overrides:
        doc["checkpoint"] = overrides["checkpoint"]
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass
class Topics:
    metrics: str
    alerts: str
    dead_letter: str
    group: str


@pytest.fixture
def topics(bootstrap: str) -> Iterator[Topics]:
    tag = uuid.uuid4().hex[:10]
    t = Topics(f"it-metrics-{tag}", f"it-alerts-{tag}", f"it-dlq-{tag}", f"it-group-{tag}")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(t.metrics, 3, 1)])
    admin.close()
    yield t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """`monitor run` as users run it, with its own port for /metrics."""

    def __init__(self, config: Path, bootstrap: str, log: Path, options: tuple[str, ...] = ()) -> None:
        """`options` go before the subcommand, e.g. ("--log-level", "DEBUG")."""
        self.port = free_port()
        self.log = log
        env = {**os.environ, "MONITOR_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "monitor", *options, "--config", str(config), "run"]
        cmd += ["--listen", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT)

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return ""

    def metric_sum(self, name: str, contains: str = "") -> float:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in self.metrics().splitlines()
            if line.startswith(name + "{") and contains in line
        )

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_daemon(bootstrap: str, tmp_path: Path) -> Iterator[Callable[[Path], Daemon]]:
    started: list[Daemon] = []

    def start(config: Path) -> Daemon:
        daemon = Daemon(config, bootstrap, tmp_path / f"daemon-{len(started)}.log")
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def wait_for(check: Callable[[], bool], timeout: float, what: str, daemon: Daemon | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if daemon is not None and daemon.proc.poll() is not None:
            pytest.fail(f"daemon exited with {daemon.proc.returncode} while waiting for {what}:\n{daemon.output()}")
        time.sleep(0.2)
    tail = daemon.output()[-3000:] if daemon else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tail}")


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def stream_messages(first: int = 0, last: int | None = None) -> list[tuple[bytes, bytes]]:
    values, _ = generate(SPEC)
    return [(p.series.encode(), encode_point(p)) for p in points(SPEC, values, first, last)]


class TopicReader:
    """Reads a whole topic from the start, keeping every record, until a condition holds."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
        self.records: list = []

    def read_until(self, done: Callable[[list], bool], timeout: float, daemon: Daemon | None = None) -> list:
        def check() -> bool:
            for batch in self.consumer.poll(timeout_ms=200).values():
                self.records.extend(batch)
            return done(self.records)

        wait_for(check, timeout, f"records on {self.consumer.subscription()}", daemon)
        return self.records

    def read_to_end(self, timeout: float) -> list:
        """Every record the topic holds now (its end offsets reached): after a daemon stopped, all it
        published. A condition that already holds would stop after one poll, which may bring nothing."""

        def at_end(_: list) -> bool:
            assigned = self.consumer.assignment()
            ends = self.consumer.end_offsets(list(assigned)) if assigned else {}
            return bool(ends) and all(self.consumer.position(tp) >= end for tp, end in ends.items())

        return self.read_until(at_end, timeout)

    def values(self) -> list[dict]:
        return [orjson.loads(r.value) for r in self.records]

    def close(self) -> None:
        self.consumer.close()
