"""`monitor demo`: the whole pipeline against a running Kafka, bounded in time.

It produces the healthy head of a synthetic stream, trains a model on it from the topic, starts the
daemon as users run it (a subprocess), streams the rest live while printing alerts as they arrive on the
alert topic, waits until the daemon has read everything, stops it with SIGTERM, and prints a summary
that compares the alerts with the injected anomalies. Topics are fresh per run, so runs never mix.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import yaml

from monitor.cli.alerts import alert_line
from monitor.config import KafkaSettings, load_config
from monitor.errors import MonitorError
from monitor.synthetic import Anomaly, StreamSpec, generate, paced, points

DRAIN_TIMEOUT_S = 120.0
HELP = "the whole pipeline on a local Kafka, bounded in time"


def add_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--workdir", default="out/demo", help="where the demo's model and files go")
    demo.add_argument("--live-seconds", type=float, default=60.0, help="how long the live stream runs")


def run(args: argparse.Namespace) -> int:
    from monitor.kafka.client import ensure_topics  # kafka-python only when the command runs
    from monitor.kafka.tools import produce_points

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    config_path = _demo_config(Path(args.config), workdir, stamp)
    kafka = load_config(config_path).kafka
    ensure_topics(kafka, [kafka.metrics_topic, kafka.alert_topic, kafka.dead_letter_topic])
    # Data time ends about now, so the alerts' timestamps read naturally.
    spec = StreamSpec(start_ts=float(int(time.time()) - StreamSpec().points * StreamSpec().step_s))
    values, anomalies = generate(spec)
    total = spec.series * spec.points

    _say(f"1/4 producing the healthy head ({spec.series} series x {spec.healthy} points) to {kafka.metrics_topic}")
    head_start = time.time() - 1
    produce_points(kafka, kafka.metrics_topic, points(spec, values, 0, spec.healthy))
    head_end = time.time() + 1

    _say("2/4 training the LSTM autoencoder on that range of the topic")
    _monitor(
        config_path,
        "train",
        "--topic",
        kafka.metrics_topic,
        "--start",
        str(head_start),
        "--end",
        str(head_end),
        "--select-by",
        "record",  # the range is when the head was produced; its points carry older data times
    )

    _say("3/4 starting the daemon; alerts appear below as they arrive on " + kafka.alert_topic)
    alerts: list[dict] = []
    stop = threading.Event()
    follower = threading.Thread(target=_print_alerts, args=(kafka, alerts, stop), daemon=True)
    follower.start()
    daemon = subprocess.Popen(_command(config_path, "run", log_level="WARNING"))
    try:
        live = spec.series * (spec.points - spec.healthy)
        _say(f"    metrics at http://127.0.0.1:{_port(config_path)}/metrics; streaming {live} points live")
        stream = paced(points(spec, values, spec.healthy), live / max(args.live_seconds, 1.0))
        produce_points(kafka, kafka.metrics_topic, stream)
        _wait_until_read(_port(config_path), total, daemon)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
        time.sleep(1.0)
        stop.set()
        follower.join(timeout=10)
    _say("4/4 summary")
    _summary(total, alerts, anomalies)
    return code


def _demo_config(base: Path, workdir: Path, stamp: str) -> Path:
    """config.yaml with fresh topics and group, and the model in the work directory."""
    doc = yaml.safe_load(base.read_text()) or {}
    kafka = doc.setdefault("kafka", {})
    kafka.update(
        metrics_topic=f"demo-metrics-{stamp}",
        alert_topic=f"demo-alerts-{stamp}",
        dead_letter_topic=f"demo-dead-letter-{stamp}",
        group_id=f"demo-{stamp}",
    )
    detectors = doc.get("detectors") or [{}]
    for detector in detectors:
        detector.setdefault("model", {})["path"] = str((workdir / "model" / detector.get("name", "default")).resolve())
    doc["detectors"] = detectors
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _command(config: Path, *args: str, log_level: str = "INFO") -> list[str]:
    return [sys.executable, "-m", "monitor", "--config", str(config), "--log-level", log_level, *args]


def _monitor(config: Path, *args: str) -> None:
    result = subprocess.run(_command(config, *args), check=False)
    if result.returncode != 0:
        raise MonitorError(f"monitor {' '.join(args)} failed with exit code {result.returncode}")


def _port(config: Path) -> int:
    return load_config(config).listen_port


def _print_alerts(kafka: KafkaSettings, alerts: list[dict], stop: threading.Event) -> None:
    from monitor.kafka.tools import follow_topic

    for value in follow_topic(kafka, kafka.alert_topic, stop):
        alert = orjson.loads(value)
        alerts.append(alert)
        _say(f"    ALERT {alert_line(alert)}")


def _wait_until_read(port: int, total: int, daemon: subprocess.Popen) -> None:
    """Poll the daemon's own /metrics until it has consumed every message produced."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline and daemon.poll() is None:
        if _messages_read(port) >= total:
            return
        time.sleep(0.5)
    raise MonitorError(f"the daemon did not read all {total} messages within {DRAIN_TIMEOUT_S:.0f}s")


def _messages_read(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("monitor_messages_total{")
    )


def _summary(total: int, alerts: list[dict], anomalies: list[Anomaly]) -> None:
    firing = [a for a in alerts if a["status"] == "firing"]
    _say(f"    points produced: {total}; alerts firing: {len(firing)}, resolved: {len(alerts) - len(firing)}")
    for anomaly in anomalies:
        hits = [a for a in firing if a["series"] == anomaly.series]
        found = "FOUND" if hits else "missed"
        _say(f"    injected {anomaly.kind:<12} on {anomaly.series:<14} -> {found}")
    injected = {a.series for a in anomalies}
    extra = [a for a in firing if a["series"] not in injected]
    _say(f"    alerts on series without an injected anomaly: {len(extra)}")


def _say(text: str) -> None:
    print(text, flush=True)
