"""TLS to a real broker (`kafka.sh` in KAFKA_MODE=ssl makes a CA, a broker and a client certificate): the
daemon verifies the broker against `kafka.ssl_cafile`, proves itself with a client certificate where the
listener requires one (mutual TLS), and a broker it cannot verify stops the start with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, Daemon, Topics, produce, stream_messages
from .resilience_support import OwnKafka, daemon_config, make_topics, own_kafka, serve_until_resolved


@pytest.fixture(scope="module")
def kafka(bootstrap: str, tmp_path_factory: pytest.TempPathFactory):
    with own_kafka(tmp_path_factory.mktemp("kafka-ssl"), mode="ssl") as kafka:
        yield kafka


def _tls_config(
    path: Path, kafka: OwnKafka, model: Path, client: str, mutual: bool, **extra: object
) -> tuple[Path, Topics]:
    """A daemon config for the TLS listeners, with fresh topics that hold the test stream."""
    topics = make_topics(kafka.bootstrap)
    produce(kafka.bootstrap, topics.metrics, stream_messages())
    tls: dict[str, object] = {"security_protocol": "SSL", "ssl_cafile": str(kafka.tls_dir / "ca.pem")}
    if mutual:
        tls.update(ssl_certfile=str(kafka.tls_dir / "client.pem"), ssl_keyfile=str(kafka.tls_dir / "client.key"))
    return daemon_config(path, topics, model, client=client, **{**tls, **extra}), topics


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
def test_the_daemon_runs_over_tls_and_mutual_tls(
    kafka: OwnKafka, model_dir: Path, tmp_path: Path, kafka_client: str, mutual: bool
):
    config, topics = _tls_config(tmp_path / "config.yaml", kafka, model_dir, kafka_client, mutual)
    listener = kafka.mtls_bootstrap if mutual else kafka.tls_bootstrap
    daemon = Daemon(config, listener, tmp_path / "daemon.log")
    serve_until_resolved(daemon, kafka.bootstrap, topics.alerts)


def test_mutual_tls_without_a_client_certificate_is_refused(kafka: OwnKafka, model_dir: Path, tmp_path: Path):
    config, _ = _tls_config(tmp_path / "config.yaml", kafka, model_dir, "kafka-python", False, connect_timeout_ms=3000)
    code, lines = _start(config, kafka.mtls_bootstrap)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(f"monitor: error: cannot reach Kafka at {kafka.mtls_bootstrap}")


def test_a_broker_signed_by_another_ca_stops_the_start_with_one_line(kafka: OwnKafka, model_dir: Path, tmp_path: Path):
    wrong = tmp_path / "wrong-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "wrong-ca.key"),
         "-out", str(wrong), "-days", "1", "-subj", "/CN=not the broker's CA"],
        check=True, capture_output=True,
    )  # fmt: skip
    config, _ = _tls_config(
        tmp_path / "config.yaml",
        kafka,
        model_dir,
        "kafka-python",
        False,
        ssl_cafile=str(wrong),
        connect_timeout_ms=3000,
    )
    code, lines = _start(config, kafka.tls_bootstrap)
    assert code == 1
    assert len(lines) == 1, lines
    assert f"does not verify against kafka.ssl_cafile {wrong}" in lines[0]
    assert "CERTIFICATE_VERIFY_FAILED" in lines[0]


def _start(config: Path, bootstrap: str) -> tuple[int, list[str]]:
    """`monitor run` at WARNING, as an operator starts it: its exit code and every line it printed."""
    env = {"MONITOR_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "monitor", "--log-level", "WARNING", "--config", str(config), "run"]
    result = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return result.returncode, [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
