"""The feedback loop against the real broker: verdicts produced by `monitor feedback` reach the daemon in its
consumer group, dismiss an open alert, leave a confirmed one alone, survive a restart, and bad feedback is
dead-lettered; and a dismissed pattern stops alerting after the next scheduled retraining."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import yaml

from monitor.cli import main
from monitor.models.store import resolve
from monitor.records import encode_point, parse_time
from monitor.synthetic import generate, points

from .conftest import SPEC, TopicReader, Topics, produce, wait_for, write_config

HEALTHY = dataclasses.replace(SPEC, anomalous_series=0)
SHIFT_FROM = 500
"""host-00/cpu and host-01/cpu shift their level from this step on, and stay shifted."""


def stream(first: int, last: int) -> list[tuple[bytes, bytes]]:
    values, _ = generate(HEALTHY)
    values[0:2, SHIFT_FROM:] += 2.0
    return [(p.series.encode(), encode_point(p)) for p in points(HEALTHY, values, first, last)]


def config_for(tmp_path: Path, topics: Topics, model: Path) -> Path:
    kafka = {"metrics_topic": topics.metrics, "alert_topic": topics.alerts, "dead_letter_topic": topics.dead_letter}
    config = write_config(tmp_path / "config.yaml", {"kafka": {**kafka, "group_id": topics.group}}, model)
    doc = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**doc, "checkpoint": {"interval_s": 0.5}}))
    return config


def firing_ids(reader: TopicReader) -> dict[str, str]:
    return {a["series"]: a["alert_id"] for a in reader.values() if a["status"] == "firing"}


def test_verdicts_dismiss_confirm_survive_a_restart_and_bad_ones_are_dead_lettered(
    bootstrap, topics, model_dir, tmp_path, start_daemon, monkeypatch, capsys
):
    monkeypatch.setenv("MONITOR_KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    config = config_for(tmp_path, topics, model_dir)
    feedback_topic = f"{topics.alerts}-feedback"
    daemon = start_daemon(config)
    alerts = TopicReader(bootstrap, topics.alerts)
    produce(bootstrap, topics.metrics, stream(0, SHIFT_FROM + 40))
    alerts.read_until(lambda _: {"host-00/cpu", "host-01/cpu"} <= set(firing_ids(alerts)), 120, daemon)
    ids = firing_ids(alerts)

    cli = ["--config", str(config), "feedback"]
    assert main([*cli, ids["host-00/cpu"], "--false-positive", "--by", "alice", "--note", "nightly batch"]) == 0
    assert main([*cli, ids["host-01/cpu"], "--true-positive"]) == 0
    assert main([*cli, "0123456789abcdef01234567", "--true-positive"]) == 1
    assert "alert '0123456789abcdef01234567' is not on the alert topic" in capsys.readouterr().err

    def dismissed(values: list[dict]) -> list[dict]:
        return [a for a in values if a.get("resolution") == "dismissed"]

    alerts.read_until(lambda _: dismissed(alerts.values()), 60, daemon)
    (resolved,) = dismissed(alerts.values())
    assert (resolved["alert_id"], resolved["status"], resolved["resolved_by"]) == (
        ids["host-00/cpu"],
        "resolved",
        "alice",
    )
    wait_for(lambda: daemon.metric_sum("monitor_feedback_total") == 2, 30, "both verdicts counted", daemon)
    assert daemon.metric_sum("monitor_feedback_total", 'verdict="false_positive"') == 1
    assert daemon.metric_sum("monitor_feedback_precision") == 0.5

    produce(bootstrap, feedback_topic, [(b"host-00/cpu", b'{"alert_id": "x", "verdict": "maybe"}')])
    bad = f'outcome="wrong_type",topic="{feedback_topic}"'
    wait_for(lambda: daemon.metric_sum("monitor_messages_total", bad) == 1, 30, "bad feedback counted", daemon)
    letters = TopicReader(bootstrap, topics.dead_letter)
    (letter,) = letters.read_until(lambda records: len(records) >= 1, 30)
    assert dict(letter.headers)["reason"] == b"wrong_type"
    assert dict(letter.headers)["source.topic"] == feedback_topic.encode()
    letters.close()

    produce(bootstrap, topics.metrics, stream(SHIFT_FROM + 40, SHIFT_FROM + 80))
    wait_for(
        lambda: (
            daemon.metric_sum("monitor_messages_total", f'outcome="ok",topic="{topics.metrics}"')
            >= 4 * (SHIFT_FROM + 80)
        ),
        60,
        "all points",
        daemon,
    )
    assert daemon.stop() == 0

    restarted = start_daemon(config)
    produce(bootstrap, topics.metrics, stream(SHIFT_FROM + 80, SHIFT_FROM + 120))
    assert main([*cli, ids["host-00/cpu"], "--false-positive", "--by", "alice"]) == 0  # the same verdict again
    fed = f'outcome="ok",topic="{feedback_topic}"'
    wait_for(lambda: restarted.metric_sum("monitor_messages_total", fed) == 1, 60, "the repeated verdict", restarted)
    wait_for(lambda: restarted.metric_sum("monitor_windows_scored_total") > 0, 60, "scoring after restart", restarted)
    assert restarted.metric_sum("monitor_feedback_total") == 0, "a verdict kept across the restart counts once"
    assert restarted.metric_sum("monitor_feedback_precision") == 0.5, "the restored verdicts: one of two confirmed"
    assert restarted.stop() == 0

    alerts.read_to_end(30)
    statuses = [(a["series"], a["status"]) for a in alerts.values()]
    alerts.close()
    assert statuses.count(("host-00/cpu", "firing")) == 1, "the dismissed shift does not fire again, restart or not"
    assert statuses.count(("host-01/cpu", "firing")) == 1 and ("host-01/cpu", "resolved") not in statuses


BUMPS = (500, 700)
"""host-00/cpu and host-01/cpu rise by the same bump for 12 steps at each of these steps."""


def bumped(first: int, last: int) -> list[tuple[bytes, bytes]]:
    values, _ = generate(HEALTHY)
    for step in BUMPS:
        values[0:2, step : step + 12] += 1.5
    return [(p.series.encode(), encode_point(p)) for p in points(HEALTHY, values, first, last)]


def test_a_dismissed_pattern_stops_alerting_after_retraining_and_a_confirmed_one_still_alerts(
    bootstrap, topics, model_dir, tmp_path, start_daemon, monkeypatch
):
    """Both series show the same bump twice; between the two, host-00's alert is dismissed, host-01's
    confirmed, and scheduled retraining publishes a model that the daemon swaps in."""
    monkeypatch.setenv("MONITOR_KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    store = tmp_path / "store"
    shutil.copytree(model_dir, store)
    config = config_for(tmp_path, topics, store)
    doc = yaml.safe_load(config.read_text())
    doc["detectors"][0]["model"]["reload_interval"] = 1.0
    doc["detectors"][0]["retraining"] = {"every": 60, "epochs": 15}  # as many as the first model had
    config.write_text(yaml.safe_dump(doc))
    daemon = start_daemon(config)
    alerts = TopicReader(bootstrap, topics.alerts)
    produce(bootstrap, topics.metrics, bumped(0, BUMPS[0] + 12))
    alerts.read_until(lambda _: {"host-00/cpu", "host-01/cpu"} <= set(firing_ids(alerts)), 120, daemon)
    ids = firing_ids(alerts)
    cli = ["--config", str(config), "feedback"]
    assert main([*cli, ids["host-00/cpu"], "--false-positive"]) == 0
    assert main([*cli, ids["host-01/cpu"], "--true-positive"]) == 0
    alerts.read_until(lambda _: any(a.get("resolution") == "dismissed" for a in alerts.values()), 60, daemon)

    produce(bootstrap, topics.metrics, bumped(BUMPS[0] + 12, BUMPS[1] - 40))
    wait_for(lambda: "model_retrained" in daemon.output(), 150, "scheduled retraining", daemon)
    wait_for(lambda: 'version="' + resolve(store).name in daemon.metrics(), 30, "the retrained model served", daemon)
    before = len(alerts.values())
    produce(bootstrap, topics.metrics, bumped(BUMPS[1] - 40, BUMPS[1] + 60))
    scored = f'outcome="ok",topic="{topics.metrics}"'
    total = HEALTHY.series * (BUMPS[1] + 60)
    wait_for(lambda: daemon.metric_sum("monitor_messages_total", scored) >= total, 60, "all points", daemon)
    assert daemon.stop() == 0

    alerts.read_to_end(30)
    bump = (HEALTHY.start_ts + HEALTHY.step_s * BUMPS[1], HEALTHY.start_ts + HEALTHY.step_s * (BUMPS[1] + 12))
    fired = [
        a["series"]
        for a in alerts.values()[before:]
        if a["status"] == "firing" and bump[0] <= parse_time(a["started_at"]) < bump[1]
    ]
    alerts.close()
    assert "host-01/cpu" in fired, "a confirmed pattern still alerts after retraining"
    assert "host-00/cpu" not in fired, "a dismissed pattern does not alert again after retraining"
