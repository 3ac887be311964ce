"""Kafka authentication against a real broker with a SASL_PLAINTEXT listener (PLAIN and SCRAM users made by
`kafka.sh` in KAFKA_MODE=sasl), secrets only from the environment or a file, never in the logs.

Model files are the other way in for foreign code: tests/unit/test_models.py
(`test_a_malicious_model_file_is_refused_without_running_it`) loads a crafted pickle and shows it refused.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from monitor.config import parse_config
from monitor.kafka.client import ensure_topics
from monitor.kafka.sink import KafkaSink
from monitor.kafka.source import KafkaSource

from .conftest import Daemon, produce, stream_messages, wait_for
from .resilience_support import (
    SASL_PASSWORD,
    SASL_USER,
    OwnKafka,
    daemon_config,
    kill,
    make_topics,
    sasl_kafka,
    serve_until_resolved,
)


@pytest.fixture(scope="module")
def kafka(bootstrap: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> OwnKafka:
    return sasl_kafka(request, tmp_path_factory)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_each_mechanism_produces_and_consumes_in_a_group(kafka: OwnKafka, mechanism: str):
    topics = make_topics(kafka.bootstrap, partitions=1)
    doc = {
        "kafka": {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_username": SASL_USER,
            "metrics_topic": topics.metrics,
            "group_id": topics.group,
            "connect_timeout_ms": 10_000,
        }
    }
    environ = {"MONITOR_KAFKA_BOOTSTRAP_SERVERS": kafka.sasl_bootstrap, "MONITOR_KAFKA_SASL_PASSWORD": SASL_PASSWORD}
    settings = parse_config(doc, environ=environ).kafka
    ensure_topics(settings, [topics.alerts])
    sink = KafkaSink(settings)
    for i in range(5):
        sink.send(topics.metrics, b"%d" % i, None)
    sink.flush()
    sink.close()
    source = KafkaSource(settings)
    received: list[bytes] = []
    wait_for(lambda: bool(received.extend(m.value for m in source.poll())) or len(received) >= 5, 30, "records")
    source.commit()
    source.close()
    assert sorted(received) == [b"%d" % i for i in range(5)]


def test_the_daemon_runs_over_scram_with_the_password_from_a_file_and_never_logs_it(
    kafka: OwnKafka, model_dir: Path, tmp_path: Path, kafka_client: str
):
    topics = make_topics(kafka.bootstrap)
    secret = tmp_path / "kafka-password"
    secret.write_text(SASL_PASSWORD + "\n")
    config = daemon_config(
        tmp_path / "config.yaml",
        topics,
        model_dir,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=SASL_USER,
        sasl_password_file=str(secret),
        client=kafka_client,
    )
    messages = stream_messages()
    produce(kafka.bootstrap, topics.metrics, messages)
    daemon = Daemon(config, kafka.sasl_bootstrap, tmp_path / "daemon.log", ("--log-level", "DEBUG"))
    serve_until_resolved(daemon, kafka.bootstrap, topics.alerts)
    assert SASL_PASSWORD not in daemon.output()


def test_a_wrong_password_stops_the_start_with_one_line_and_no_secret(
    kafka: OwnKafka, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    wrong = "not-" + SASL_PASSWORD
    monkeypatch.setenv("MONITOR_KAFKA_SASL_PASSWORD", wrong)
    topics = make_topics(kafka.bootstrap)
    config = daemon_config(
        tmp_path / "config.yaml",
        topics,
        model_dir,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username=SASL_USER,
        connect_timeout_ms=3000,
    )
    daemon = Daemon(config, kafka.sasl_bootstrap, tmp_path / "daemon.log", ("--log-level", "DEBUG"))
    try:
        assert daemon.proc.wait(timeout=60) == 1
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon kept running with a wrong password:\n{daemon.output()[-2000:]}")
    finally:
        kill(daemon)
    output = daemon.output()
    [line] = [line for line in output.splitlines() if "ERROR" in line or "error:" in line]
    assert line.startswith("monitor: error: cannot reach Kafka at "), line
    assert f"as SASL user '{SASL_USER}' (SCRAM-SHA-256)" in line, line
    assert wrong not in output and SASL_PASSWORD not in output
