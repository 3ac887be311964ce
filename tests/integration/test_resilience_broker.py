"""Broker faults, on brokers of the tests' own: the broker stops mid-stream and comes back, and one node of
a three-broker cluster stops. The daemon waits with backoff (`/readyz` says so), then goes on: every
window is scored (again only after the group dropped the member and its state was restored), every alert
arrives once per incident, and the group's offsets reach the end of the topic."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.synthetic import generate

from .conftest import SPEC, WINDOW, Daemon, TopicReader, produce, stream_messages, wait_for
from .resilience_support import (
    OwnKafka,
    committed_and_ends,
    daemon_config,
    expected_windows,
    kill,
    make_topics,
    own_kafka,
    readyz,
    sasl_kafka,
)

WINDOWS = expected_windows(SPEC.points, SPEC.series, WINDOW, stride=2)


@pytest.fixture(scope="module")
def outage_kafka(bootstrap: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> OwnKafka:
    """A single node of our own (`bootstrap` first: it fetched the jars this one shares)."""
    return sasl_kafka(request, tmp_path_factory)


@pytest.fixture(scope="module")
def cluster(bootstrap: str, tmp_path_factory: pytest.TempPathFactory):
    with own_kafka(tmp_path_factory.mktemp("kafka-cluster"), mode="cluster3", nodes=3) as kafka:
        yield kafka


def test_broker_stop_and_start_mid_stream_skips_no_record(
    outage_kafka: OwnKafka, model_dir: Path, tmp_path: Path, kafka_client: str
):
    b = outage_kafka.bootstrap
    topics = make_topics(b)
    messages = stream_messages()
    produce(b, topics.metrics, messages)
    # Small polls make a long stream of steps, so the broker goes away between a publish and a commit.
    config = daemon_config(tmp_path / "config.yaml", topics, model_dir, max_poll_records=20, client=kafka_client)
    daemon = Daemon(config, b, tmp_path / "daemon.log")
    try:
        wait_for(lambda: daemon.metric_sum("monitor_messages_total") >= 600, 90, "a part of the stream", daemon)
        outage_kafka.run("stop")
        wait_for(lambda: readyz(daemon)[0] == 503, 30, "/readyz to report the outage", daemon)
        assert "broker" in readyz(daemon)[1]
        outage_kafka.run("start")
        wait_for(lambda: readyz(daemon)[0] == 200, 90, "ready again", daemon)
        scored = _all_windows_scored(daemon)
        alerts = _alerts_of_every_anomaly(b, topics.alerts, daemon)
        assert daemon.stop() == 0
    finally:
        kill(daemon)
    # An outage longer than the session drops the member: its partitions are restored from their written
    # states and replayed from the committed offset, so windows after those states are scored again (the
    # statistics and alert ids as in one pass: _check_alerts). Otherwise each window is scored once.
    dropped = daemon.output().count("state_restored") > 1
    assert scored == WINDOWS or (dropped and scored > WINDOWS), "each window scored, again only after a restore"
    committed, ends = committed_and_ends(b, topics)
    assert committed == ends
    assert "broker_error" in daemon.output()
    _check_alerts(alerts)


def test_one_broker_of_three_stops_and_nothing_is_lost(cluster: OwnKafka, model_dir: Path, tmp_path: Path):
    b = cluster.bootstrap
    topics = make_topics(b)
    messages = stream_messages()
    half = len(messages) // 2
    produce(b, topics.metrics, messages[:half])
    daemon = Daemon(daemon_config(tmp_path / "config.yaml", topics, model_dir), b, tmp_path / "daemon.log")
    try:
        wait_for(lambda: daemon.metric_sum("monitor_messages_total") >= half, 90, "the first half", daemon)
        cluster.run("stop-node", "1")
        produce(b, topics.metrics, messages[half:])
        scored = _all_windows_scored(daemon)
        alerts = _alerts_of_every_anomaly(b, topics.alerts, daemon)
        wait_for(lambda: readyz(daemon)[0] == 200, 60, "ready", daemon)
        assert daemon.stop() == 0
    finally:
        kill(daemon)
    assert scored == WINDOWS
    committed, ends = committed_and_ends(b, topics)
    assert committed == ends
    _check_alerts(alerts)


def _all_windows_scored(daemon: Daemon) -> float:
    wait_for(lambda: daemon.metric_sum("monitor_windows_scored_total") >= WINDOWS, 120, "every window", daemon)
    return daemon.metric_sum("monitor_windows_scored_total")


def _alerts_of_every_anomaly(bootstrap: str, topic: str, daemon: Daemon) -> list[dict]:
    _, anomalies = generate(SPEC)
    expected = {a.series for a in anomalies}
    reader = TopicReader(bootstrap, topic)
    reader.read_until(lambda rs: expected <= {r.key.decode() for r in rs if b'"resolved"' in r.value}, 60, daemon)
    values = reader.values()
    reader.close()
    return values


def _check_alerts(alerts: list[dict]) -> None:
    """One incident per injected anomaly: replays may repeat a message, never invent another id."""
    _, anomalies = generate(SPEC)
    for anomaly in anomalies:
        mine = [a for a in alerts if a["series"] == anomaly.series]
        assert len({a["alert_id"] for a in mine}) == 1, mine
        assert {a["status"] for a in mine} == {"firing", "resolved"}
