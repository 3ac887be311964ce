"""The model lifecycle against the real broker: train from a Kafka time range, roll new versions into a
running daemon (polled and on SIGHUP), refuse a corrupt one; and multivariate entities from real files."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import yaml

from monitor.cli import main
from monitor.models.store import point_current, resolve
from monitor.records import encode_point
from monitor.synthetic import generate, points

from .conftest import ROOT, SPEC, TopicReader, Topics, produce, wait_for, write_config

HEALTHY = dataclasses.replace(SPEC, anomalous_series=0)
SPIKES = {"host-00/cpu": 520, "host-01/cpu": 640, "host-02/cpu": 760}
"""Series → first step of a 3-point spike: one before the swap, one after it, one after a refused version."""


def stream(first: int, last: int) -> list[tuple[bytes, bytes]]:
    values, _ = generate(HEALTHY)
    for series, step in SPIKES.items():
        values[int(series[5:7]), step : step + 3] += 1.0
    return [(p.series.encode(), encode_point(p)) for p in points(HEALTHY, values, first, last)]


def daemon_config(tmp_path: Path, topics: Topics, store: Path, reload_interval: float) -> Path:
    kafka = {
        "metrics_topic": topics.metrics,
        "alert_topic": topics.alerts,
        "dead_letter_topic": topics.dead_letter,
        "group_id": topics.group,
    }
    path = write_config(tmp_path / "config.yaml", {"kafka": kafka}, store)
    doc = yaml.safe_load(path.read_text())
    doc["detectors"][0]["model"]["reload_interval"] = reload_interval
    path.write_text(yaml.safe_dump(doc))
    return path


def publish_dense(tmp_path: Path, store: Path, model_dir: Path) -> str:
    """Version B: a dense model of the same window and features, trained by `monitor train` into `store`."""
    config = tmp_path / "train-b.yaml"
    detector = {"window": 16, "model": {"kind": "dense", "hidden": 32}, "training": {"learning_rate": 0.01}}
    config.write_text(yaml.safe_dump({"detectors": [detector]}))
    healthy = model_dir.parent / "healthy.jsonl"
    assert main(["--config", str(config), "train", "--input", str(healthy), "--out", str(store), "--no-progress"]) == 0
    return resolve(store).name


def model_info(daemon) -> str:
    return next((line for line in daemon.metrics().splitlines() if line.startswith("monitor_model_info{")), "")


def test_new_versions_roll_into_the_running_daemon_and_a_corrupt_one_is_refused(
    bootstrap, topics, model_dir, tmp_path, start_daemon
):
    store = Path(shutil.copytree(model_dir, tmp_path / "store"))
    version_a = resolve(store).name
    daemon = start_daemon(daemon_config(tmp_path, topics, store, reload_interval=1.0))
    alerts = TopicReader(bootstrap, topics.alerts)

    def fired(series: str):
        return lambda records: any(r.key.decode() == series and b'"firing"' in r.value for r in records)

    produce(bootstrap, topics.metrics, stream(0, 600))
    alerts.read_until(fired("host-00/cpu"), timeout=90, daemon=daemon)
    wait_for(lambda: f'version="{version_a}"' in model_info(daemon), 10, "model A in monitor_model_info", daemon)

    version_b = publish_dense(tmp_path, store, model_dir)
    wait_for(lambda: f'version="{version_b}"' in model_info(daemon), 30, "model B in monitor_model_info", daemon)
    assert 'kind="dense"' in model_info(daemon)
    produce(bootstrap, topics.metrics, stream(600, 720))
    alerts.read_until(fired("host-01/cpu"), timeout=60, daemon=daemon)

    broken = store / "lstm-29990101-bad000"
    broken.mkdir()
    (broken / "metadata.json").write_text('{"format_version": 1, "kind": "lstm"')
    (broken / "model.pt").write_bytes(b"not a state dict")
    point_current(store, broken.name)
    wait_for(lambda: "model_refused" in daemon.output(), 30, "the corrupt version to be refused", daemon)
    produce(bootstrap, topics.metrics, stream(720, 900))
    alerts.read_until(fired("host-02/cpu"), timeout=60, daemon=daemon)
    serving = model_info(daemon)  # read while it runs: after the refusal B still serves
    assert daemon.stop() == 0
    records = alerts.values()
    alerts.close()

    by_series = {a["series"]: a for a in records if a["status"] == "firing"}
    assert by_series["host-00/cpu"]["model_version"] == version_a
    assert by_series["host-01/cpu"]["model_version"] == version_b
    assert by_series["host-02/cpu"]["model_version"] == version_b, "the refused version never served"
    [refusal] = [line for line in daemon.output().splitlines() if "model_refused" in line]
    assert str(broken) in refusal and f"serving={version_b}" in refusal
    assert f"model_reloaded detector=default previous={version_a} version={version_b}" in daemon.output()
    assert f'version="{version_b}"' in serving and 'kind="dense"' in serving, serving


def test_sighup_reloads_at_once_when_polling_is_off(bootstrap, topics, model_dir, tmp_path, start_daemon):
    store = Path(shutil.copytree(model_dir, tmp_path / "store"))
    daemon = start_daemon(daemon_config(tmp_path, topics, store, reload_interval=0.0))
    wait_for(lambda: resolve(store).name in model_info(daemon), 60, "the daemon serving model A", daemon)

    version_b = publish_dense(tmp_path, store, model_dir)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # polling is off: without a signal nothing may change
        assert version_b not in model_info(daemon)
        time.sleep(0.2)
    daemon.proc.send_signal(signal.SIGHUP)

    wait_for(lambda: f'version="{version_b}"' in model_info(daemon), 30, "model B after SIGHUP", daemon)
    assert daemon.stop() == 0


def test_train_any_kind_from_a_kafka_time_range(bootstrap, topics, tmp_path, monkeypatch):
    monkeypatch.setenv("MONITOR_KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    before = time.time() - 1
    produce(bootstrap, topics.metrics, stream(0, HEALTHY.healthy))
    after = time.time() + 1
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"detectors": [{"window": 16, "training": {"epochs": 2}}]}))

    args = ["--topic", topics.metrics, "--start", str(before), "--end", str(after), "--select-by", "record"]
    args += ["--kind", "vae"]
    assert main(["--config", str(config), "train", *args, "--out", str(tmp_path / "store"), "--no-progress"]) == 0

    metadata = orjson.loads((resolve(tmp_path / "store") / "metadata.json").read_bytes())
    assert metadata["kind"] == "vae"
    assert metadata["data_range"]["points"] == HEALTHY.series * HEALTHY.healthy
    assert metadata["data_range"]["source"].startswith(f"topic {topics.metrics} from ")


FEATURES = ("cpu", "mem", "rps", "disk", "net")
HOSTS = ("web-01", "web-02", "web-03")


def host_rows(host: str, count: int, fault_from: int | None) -> np.ndarray:
    h, t = HOSTS.index(host), np.arange(count)[:, None]
    f = np.arange(len(FEATURES))[None, :]
    noise = np.random.default_rng(h).standard_normal((count, len(FEATURES)))
    rows = (10 * f + h) + (1 + f) * (np.sin(2 * np.pi * (t + 3 * f + 5 * h) / 24) + 0.05 * noise)
    if fault_from is not None:
        rows[fault_from:, FEATURES.index("disk")] += 16.0
    return rows


def univariate_lines(first: int, last: int, faulty: str | None = None) -> bytes:
    lines = []
    for host in HOSTS:
        rows = host_rows(host, last, 360 if host == faulty else None)
        for i in range(first, last):
            for feature, value in zip(FEATURES, rows[i], strict=True):
                doc = {
                    "series": f"{host}/{feature}",
                    "ts": 1.8e9 + 60 * i,
                    "value": float(value),
                    "labels": {"host": host},
                }
                lines.append(orjson.dumps(doc))
    return b"\n".join(lines) + b"\n"


def test_multivariate_entities_from_real_files_name_the_faulty_feature(tmp_path: Path) -> None:
    """`monitor train` on univariate series joined by a label, then `monitor run --input` on the live part."""
    (tmp_path / "history.jsonl").write_bytes(univariate_lines(0, 300))
    (tmp_path / "live.jsonl").write_bytes(univariate_lines(300, 420, faulty="web-02"))
    detector = {
        "name": "hosts",
        "series": "web-*",
        "entity_label": "host",
        "features": list(FEATURES),
        "window": 16,
        "stride": 2,
        "model": {"path": "store", "kind": "dense", "hidden": 64, "latent": 8},
        "training": {"epochs": 30, "learning_rate": 0.005},
        "threshold": {"warmup": 4},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"exporter": {"listen": "127.0.0.1:0"}, "detectors": [detector]}))

    assert main(["--config", str(config), "train", "--input", str(tmp_path / "history.jsonl"), "--no-progress"]) == 0
    run = [sys.executable, "-m", "monitor", "--config", str(config), "run", "--input", str(tmp_path / "live.jsonl")]
    result = subprocess.run(run, capture_output=True, cwd=ROOT, timeout=120, check=False)

    assert result.returncode == 0, result.stderr.decode()
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    fired = [a for a in alerts if a["status"] == "firing"]
    assert [a["series"] for a in fired] == ["web-02"], alerts
    assert fired[0]["top_features"][0]["feature"] == "disk"
    assert fired[0]["labels"] == {"host": "web-02"}
