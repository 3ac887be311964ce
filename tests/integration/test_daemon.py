"""The daemon end to end on the real broker: metrics in, alerts, dead letters and gauges out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from monitor.records import ALERT_SCHEMA, parse_time
from monitor.synthetic import generate

from .conftest import SPEC, WINDOW, TopicReader, Topics, produce, stream_messages, wait_for, write_config

ALERT_KEYS = {
    "schema", "alert_id", "status", "detector", "series", "labels", "model_version", "started_at", "at",
    "ended_at", "score", "threshold", "severity", "window", "top_features", "resolution", "resolved_by",
}  # fmt: skip
MANY_LABELS = {f"label{i}": "v" for i in range(10_000)}


def _config(tmp_path: Path, topics: Topics, model_dir: Path, client: str) -> Path:
    kafka = {
        "client": client,
        "metrics_topic": topics.metrics,
        "alert_topic": topics.alerts,
        "dead_letter_topic": topics.dead_letter,
        "group_id": topics.group,
    }
    return write_config(tmp_path / "config.yaml", {"kafka": kafka}, model_dir)


def test_injected_anomalies_fire_and_resolve_on_the_alert_topic(
    bootstrap, topics, model_dir, tmp_path, start_daemon, kafka_client
):
    _, anomalies = generate(SPEC)
    messages = stream_messages()
    produce(bootstrap, topics.metrics, messages)
    daemon = start_daemon(_config(tmp_path, topics, model_dir, kafka_client))

    reader = TopicReader(bootstrap, topics.alerts)
    expected = {a.series for a in anomalies}

    def every_anomaly_resolved(records: list) -> bool:
        return expected <= {r.key.decode() for r in records if b'"resolved"' in r.value}

    reader.read_until(every_anomaly_resolved, timeout=90, daemon=daemon)
    wait_for(lambda: daemon.metric_sum("monitor_messages_total") >= len(messages), 30, "all messages read", daemon)
    assert daemon.metric_sum("anomaly_score", 'series="host-00/cpu"') > 0
    assert 'anomaly_threshold{detector="default",series="host-01/cpu"}' in daemon.metrics()
    assert daemon.stop() == 0
    alerts = reader.values()
    reader.close()

    step = SPEC.step_s
    for anomaly in anomalies:
        mine = [a for a in alerts if a["series"] == anomaly.series]
        firing = [a for a in mine if a["status"] == "firing"]
        resolved = [a for a in mine if a["status"] == "resolved"]
        assert len(firing) == 1, f"{anomaly}: {mine}"
        assert [r["alert_id"] for r in resolved] == [firing[0]["alert_id"]]
        started = parse_time(firing[0]["started_at"])
        # The first anomalous window ends inside the anomaly or within one window after its start.
        assert anomaly.start_ts <= started <= anomaly.end_ts + WINDOW * step, (anomaly, firing[0])
        assert parse_time(resolved[0]["ended_at"]) > started
    for alert in alerts:
        assert set(alert) == ALERT_KEYS
        assert alert["schema"] == ALERT_SCHEMA
        assert alert["score"] > alert["threshold"] or alert["status"] == "resolved"
        assert alert["model_version"].startswith("lstm-")
        assert alert["resolution"] == {"firing": None, "resolved": "normal"}[alert["status"]]
        assert alert["resolved_by"] is None
    healthy_series = {f"host-{i:02d}/cpu" for i in range(SPEC.series)} - {a.series for a in anomalies}
    assert not [a for a in alerts if a["series"] in healthy_series], "alert on a series without an anomaly"


def test_malformed_records_are_dead_lettered_and_the_daemon_keeps_going(
    bootstrap, topics, model_dir, tmp_path, start_daemon, kafka_client
):
    good = stream_messages(0, 60)
    bad = [
        (b"k", b"\xff\xfe not utf-8"),
        (b"k", b"{not json"),
        (b"k", b'{"series": "host-00/cpu", "ts": 1767225600, "value": "high"}'),
        (b"k", b'{"series": "host-00/cpu", "ts": 1767225600, "value": 1e999}'),
        (b"k", b'{"ts": 1767225600, "value": 1}'),
        # What a crafted-input probe once got accepted as `ok`: they would be held in memory for good.
        (b"k", orjson.dumps({"series": "x" * 100_000, "ts": 1767225600, "value": 1})),
        (b"k", orjson.dumps({"series": "host-00/cpu", "ts": 1767225600, "value": 1, "labels": MANY_LABELS})),
        (b"k", orjson.dumps({"series": "host-00/cpu", "ts": 1767225600, "value": 1, "labels": {"h": "v" * 5000}})),
    ]
    reasons = ["invalid_utf8", "invalid_json", "wrong_type", "non_finite", "missing_field", *["over_limit"] * 3]
    produce(bootstrap, topics.metrics, good[:30] + bad + good[30:])
    daemon = start_daemon(_config(tmp_path, topics, model_dir, kafka_client))

    dead = TopicReader(bootstrap, topics.dead_letter)
    dead.read_until(lambda records: len(records) >= len(bad), timeout=60, daemon=daemon)
    wait_for(lambda: daemon.metric_sum("monitor_messages_total", 'outcome="ok"') >= len(good), 30, "good ones", daemon)
    assert daemon.proc.poll() is None, "the daemon stopped on bad input"
    for reason, count in Counter(reasons).items():
        assert daemon.metric_sum("monitor_messages_total", f'outcome="{reason}"') == count, reason
    assert daemon.stop() == 0

    by_value = {r.value: dict(r.headers) for r in dead.records}
    dead.close()
    assert set(by_value) == {value for _, value in bad}, "dead letters must carry the original bytes"
    for (_, value), reason in zip(bad, reasons, strict=True):
        headers = by_value[value]
        assert headers["reason"].decode() == reason
        assert headers["source.topic"].decode() == topics.metrics
        assert int(headers["source.offset"]) >= 0
    assert "rejected" in daemon.output()


def test_restart_after_sigterm_skips_no_record(bootstrap, topics, model_dir, tmp_path, start_daemon, kafka_client):
    messages = stream_messages(0, 200)
    first, second = messages[:400], messages[400:]
    config = _config(tmp_path, topics, model_dir, kafka_client)

    produce(bootstrap, topics.metrics, first)
    daemon = start_daemon(config)
    wait_for(lambda: daemon.metric_sum("monitor_messages_total") >= len(first), 60, "first half", daemon)
    assert daemon.stop() == 0
    assert _committed(bootstrap, topics) == _end_offsets(bootstrap, topics.metrics), "SIGTERM must commit"

    produce(bootstrap, topics.metrics, second)
    daemon = start_daemon(config)
    wait_for(lambda: daemon.metric_sum("monitor_messages_total") >= len(second), 60, "second half", daemon)
    # Exactly the new records: nothing skipped, nothing read twice after a clean stop.
    assert daemon.metric_sum("monitor_messages_total") == len(second)
    assert daemon.stop() == 0
    assert _committed(bootstrap, topics) == _end_offsets(bootstrap, topics.metrics)
    assert sum(_end_offsets(bootstrap, topics.metrics).values()) == len(messages)


def _committed(bootstrap: str, topics: Topics) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    offsets = admin.list_group_offsets(topics.group)[topics.group]
    admin.close()
    return {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topics.metrics and m.offset > 0}


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    ends = consumer.end_offsets(partitions)
    consumer.close()
    return {tp.partition: offset for tp, offset in ends.items() if offset > 0}
