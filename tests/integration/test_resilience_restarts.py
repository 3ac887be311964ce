"""Crashes and scale-out on the shared broker: SIGKILL at random points of a long stream, and three replicas
in one consumer group losing one to SIGKILL. The alerts that reach the topic are those of an uninterrupted
run (duplicates only with the same `alert_id`), and every window is scored by some replica."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable

from .conftest import SPEC, Daemon, TopicReader, Topics, stream_messages, wait_for
from .resilience_support import (
    DEBUG,
    all_committed,
    committed_and_ends,
    daemon_config,
    kill,
    produce_spread,
    readyz,
    reference,
    scored_windows,
)


def has_read(daemon: Daemon, records: int) -> Callable[[], bool]:
    return lambda: daemon.metric_sum("monitor_messages_total") >= records


def committed_total(bootstrap: str, topics: Topics) -> int:
    return sum(committed_and_ends(bootstrap, topics)[0].values())


def published(bootstrap: str, topic: str, expected: int) -> list[dict]:
    reader = TopicReader(bootstrap, topic)
    reader.read_until(lambda records: len(records) >= expected, 30)
    values = reader.values()
    reader.close()
    return values


def checkpointed_warm(daemon: Daemon, bootstrap: str, topics: Topics) -> None:
    """Wait until every series is past its warm-up and a checkpoint (a commit) followed."""
    warm = (("monitor_series_tracked", SPEC.series), ("monitor_series_warming_up", 0))
    wait_for(lambda: all(daemon.metric_sum(m) == v for m, v in warm), 60, "warm series", daemon)
    done = committed_total(bootstrap, topics)
    wait_for(lambda: committed_total(bootstrap, topics) > done, 30, "a checkpoint of warm series", daemon)


def test_sigkill_at_random_points_gives_the_alerts_of_an_uninterrupted_run(
    bootstrap, topics, model_dir, tmp_path, kafka_client
):
    # Small polls: the last daemon's first step holds too few points to fill a window, so only a restore
    # can make its series ready at once.
    # Every changed series written at every checkpoint (max_replay_s 0): the restart must then restore them
    # all, none warming up again. (With deferred writes a series may instead be rebuilt by the replay.)
    config = daemon_config(
        tmp_path / "config.yaml", topics, model_dir, {"max_replay_s": 0}, max_poll_records=20, client=kafka_client
    )
    expected, _ = reference(config)
    # The stream arrives over ~24 s, so every kill lands inside it, wherever the daemon is in its step.
    producer = threading.Thread(target=produce_spread, args=(bootstrap, topics.metrics, stream_messages(), 3, 150))
    producer.start()
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    logs = []
    for n in range(3):
        logs.append(tmp_path / f"daemon-{n}.log")
        daemon = Daemon(config, bootstrap, logs[-1])
        target = rng.randrange(20, 500)
        try:
            wait_for(has_read(daemon, target), 90, f"{target} records", daemon)
            if n == 2:  # so the last start has a checkpoint of series past their warm-up to restore
                checkpointed_warm(daemon, bootstrap, topics)
        finally:
            kill(daemon)
    producer.join()
    logs.append(tmp_path / "daemon-last.log")
    daemon = Daemon(config, bootstrap, logs[-1])
    try:
        wait_for(lambda: daemon.metric_sum("monitor_series_tracked") > 0, 60, "the first step after the kill", daemon)
        assert daemon.metric_sum("monitor_series_warming_up") == 0, "restored series need no new warm-up"
        wait_for(lambda: readyz(daemon)[0] == 200 and all_committed(bootstrap, topics), 90, "the whole stream", daemon)
        assert daemon.stop() == 0
    finally:
        kill(daemon)
    alerts = published(bootstrap, topics.alerts, len(expected))
    got = {(a["alert_id"], a["status"]) for a in alerts}
    assert got == expected, f"seed {seed}"
    restored = re.findall(r"state_restored .* series=(\d+)", logs[-1].read_text())
    assert sum(map(int, restored)) > 0, f"the start after the kills restores checkpointed series: {restored}"


def test_three_replicas_split_the_partitions_and_survive_one_sigkill(bootstrap, topics, model_dir, tmp_path):
    config = daemon_config(tmp_path / "config.yaml", topics, model_dir, max_poll_records=20)
    expected_alerts, expected_windows = reference(config)
    replicas = [Daemon(config, bootstrap, tmp_path / f"replica-{i}.log", DEBUG) for i in range(3)]
    try:
        for replica in replicas:  # 3 partitions, 3 replicas: each one is ready only with a partition
            wait_for(lambda r=replica: readyz(r)[0] == 200, 90, "every replica assigned a partition", replica)
        messages = stream_messages()
        produce_spread(bootstrap, topics.metrics, messages)
        victim = replicas[0]
        wait_for(has_read(victim, 100), 60, "the victim at work", victim)
        kill(victim)
        wait_for(lambda: all_committed(bootstrap, topics), 90, "the survivors to take over", replicas[1])
        for replica in replicas[1:]:
            assert replica.stop() == 0
    finally:
        for replica in replicas:
            kill(replica)
    scored = set(scored_windows(*replicas))
    assert scored == expected_windows, "every window of every series scored by some replica"
    alerts = published(bootstrap, topics.alerts, len(expected_alerts))
    assert {(a["alert_id"], a["status"]) for a in alerts} == expected_alerts
    assert "state_restored" in replicas[1].output() + replicas[2].output()
