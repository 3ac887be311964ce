"""Broker faults, on brokers of the tests' own: the broker stops mid-stream and comes back, and one node of
a three-broker cluster stops. The daemon waits with backoff (`/readyz` says so), then goes on: every
window is scored (again only after the group dropped the member and its state was restored), every alert
arrives once per incident, and the group's offsets reach the end of the topic."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from monitor.synthetic import generate

from .conftest import SPEC, WINDOW, Daemon, TopicReader, produce, stream_messages, wait_for
from .resilience_support import (
    DEBUG,
    OwnKafka,
    all_committed,
    committed_and_ends,
    daemon_config,
    expected_windows,
    kill,
    make_topics,
    own_kafka,
    readyz,
    reference,
    sasl_kafka,
    scored_windows,
)

WINDOWS = expected_windows(SPEC.points, SPEC.series, WINDOW, stride=2)
CLIENT_ERROR = re.compile(r"^\S+ \S+ ERROR kafka\.", re.M)


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
    _, expected = reference(config)
    daemon = Daemon(config, b, tmp_path / "daemon.log", DEBUG)
    try:
        wait_for(lambda: daemon.metric_sum("monitor_messages_total") >= 600, 90, "a part of the stream", daemon)
        before = len(CLIENT_ERROR.findall(daemon.output()))
        outage_kafka.run("stop")
        wait_for(lambda: readyz(daemon)[0] == 503, 30, "/readyz to report the outage", daemon)
        assert "broker" in readyz(daemon)[1]
        time.sleep(3)  # kafka-python would log about a dozen ERROR lines a second meanwhile
        outage_kafka.run("start")
        wait_for(lambda: readyz(daemon)[0] == 200, 90, "ready again", daemon)
        wait_for(lambda: "broker_back" in daemon.output(), 30, "the end of the outage", daemon)
        # Up to the end of the outage: librdkafka hands its log lines over when its client is next polled,
        # so one of the producer's connection failures can reach the log after `broker_back`, as a new
        # (zero-second) episode of its own.
        output = daemon.output()
        during = output[: output.index("\n", output.index("broker_back"))]
        scored = _all_windows_scored(daemon, expected)
        alerts = _alerts_of_every_anomaly(b, topics.alerts, daemon)
        # After a dropped membership the replay of restored partitions goes on after every window was
        # scored once: stopping before it reaches the end would leave offsets short of it.
        wait_for(lambda: all_committed(b, topics), 60, "offsets committed to the end of the stream", daemon)
        assert daemon.stop() == 0
    finally:
        kill(daemon)
    # An outage longer than the session drops the member: its partitions are restored from their written
    # states and replayed from the committed offset, so windows after those states are scored again (the
    # statistics and alert ids as in one pass: _check_alerts). Otherwise each window is scored once.
    counts = scored_windows(daemon)
    dropped = daemon.output().count("state_restored") > 1
    assert set(counts) == set(expected), "every window of the stream scored"
    assert counts == dict.fromkeys(expected, 1) or dropped, "each window scored once, again only after a restore"
    assert scored == WINDOWS or (dropped and scored > WINDOWS)
    committed, ends = committed_and_ends(b, topics)
    assert committed == ends
    assert len(CLIENT_ERROR.findall(during)) == before + 1, "kafka-python's first error shows, the flood is held"
    assert len(re.findall(r" WARNING \S+: broker_error ", during)) == 1, "one warning line per outage"
    [back] = re.findall(r"broker_back .*client_errors=(\d+)", during)
    assert int(back) > 0, "the recovery line counts what was held back"
    _check_alerts(alerts)


def test_one_broker_of_three_stops_and_nothing_is_lost(cluster: OwnKafka, model_dir: Path, tmp_path: Path):
    b = cluster.bootstrap
    topics = make_topics(b)
    messages = stream_messages()
    half = len(messages) // 2
    produce(b, topics.metrics, messages[:half])
    config = daemon_config(tmp_path / "config.yaml", topics, model_dir)
    _, expected = reference(config)
    daemon = Daemon(config, b, tmp_path / "daemon.log", DEBUG)
    try:
        wait_for(lambda: daemon.metric_sum("monitor_messages_total") >= half, 90, "the first half", daemon)
        cluster.run("stop-node", "1")
        produce(b, topics.metrics, messages[half:])
        scored = _all_windows_scored(daemon, expected)
        alerts = _alerts_of_every_anomaly(b, topics.alerts, daemon)
        wait_for(lambda: readyz(daemon)[0] == 200, 60, "ready", daemon)
        assert daemon.stop() == 0
    finally:
        kill(daemon)
    assert scored_windows(daemon) == dict.fromkeys(expected, 1), "each window scored exactly once"
    assert scored == WINDOWS
    committed, ends = committed_and_ends(b, topics)
    assert committed == ends
    _check_alerts(alerts)


def _all_windows_scored(daemon: Daemon, expected: Iterable[tuple[str, str]]) -> float:
    """Wait for every window of the stream in the log and the metric: windows scored again after a restore
    count towards the metric too, so its total alone can be reached before the last windows are scored."""
    wanted = set(expected)

    def done() -> bool:
        return wanted <= set(scored_windows(daemon)) and daemon.metric_sum("monitor_windows_scored_total") >= WINDOWS

    wait_for(done, 120, "every window", daemon)
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
