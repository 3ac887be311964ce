"""`monitor alerts` against the real broker: the alert topic as a person reads it, filtered, raw, followed."""

from __future__ import annotations

import os
import select
import subprocess
import sys

import orjson
import yaml

from monitor.cli import main
from monitor.records import Alert, encode_alert, parse_time

from .conftest import ROOT, Topics, produce

T0 = parse_time("2026-11-26T13:58:28Z")


def alert(series: str, status: str, started: float, score: float = 0.5) -> Alert:
    at = started + (240 if status == "resolved" else 60)
    ended = at if status == "resolved" else None
    return Alert(
        f"id-{series}-{started:.0f}", status, "default", series, {}, "v1", started, at, ended,
        score, 0.25, "critical", at - 600, at, (("value", 0.75), ("mem", 0.25)),
    )  # fmt: skip


ALERTS = [
    alert("web-01/cpu", "firing", T0),
    alert("db-01/cpu", "firing", T0 + 600),
    alert("web-01/cpu", "resolved", T0),
    alert("web-02/cpu", "firing", T0 + 3600),
]


def config_for(tmp_path, topics: Topics, bootstrap: str):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": bootstrap, "alert_topic": topics.alerts}}))
    return path


def fill(bootstrap: str, topics: Topics) -> None:
    produce(bootstrap, topics.alerts, [(a.series.encode(), encode_alert(a)) for a in ALERTS])
    produce(bootstrap, topics.alerts, [(b"junk", b"not an alert")])


def test_alerts_prints_each_message_as_a_line_and_exits_0_at_the_end(bootstrap, topics, tmp_path, capsys):
    fill(bootstrap, topics)
    config = config_for(tmp_path, topics, bootstrap)

    assert main(["--config", str(config), "alerts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(ALERTS)  # the junk message is skipped with a warning
    assert lines[0] == (
        "firing   web-01/cpu     started 2026-11-26T13:58:28Z score 0.500 (threshold 0.250) critical"
        "  top: value 75% mem 25%  id id-web-01/cpu-" + f"{T0:.0f}"
    )


def test_alerts_filters_by_series_status_and_time_and_prints_raw_json(bootstrap, topics, tmp_path, capsys):
    fill(bootstrap, topics)
    config = str(config_for(tmp_path, topics, bootstrap))

    assert main(["--config", config, "alerts", "--series", "web-*", "--status", "firing", "--json"]) == 0
    raw = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(a["series"], a["status"]) for a in raw] == [("web-01/cpu", "firing"), ("web-02/cpu", "firing")]
    assert raw[0] == orjson.loads(encode_alert(ALERTS[0]))

    assert main(["--config", config, "alerts", "--since", "2026-11-26T14:05:00Z", "--json"]) == 0
    since = [orjson.loads(line)["series"] for line in capsys.readouterr().out.splitlines()]
    assert since == ["db-01/cpu", "web-02/cpu"]  # `at` of web-01's firing is 13:59:28, its resolve 14:02:28


def next_line(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The next line the command prints; fails instead of hanging when none comes."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return proc.stdout.readline()


def test_alerts_follow_prints_alerts_that_arrive_later(bootstrap, topics, tmp_path):
    fill(bootstrap, topics)
    config = config_for(tmp_path, topics, bootstrap)
    cmd = [sys.executable, "-m", "monitor", "--config", str(config), "alerts", "--follow", "--status", "resolved"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert next_line(proc).startswith("resolved web-01/cpu ")
        produce(bootstrap, topics.alerts, [(b"web-02/cpu", encode_alert(alert("web-02/cpu", "resolved", T0 + 3600)))])
        assert next_line(proc).startswith("resolved web-02/cpu ")
        assert proc.poll() is None, "--follow keeps running at the end of the topic"
    finally:
        proc.kill()
        proc.wait()
