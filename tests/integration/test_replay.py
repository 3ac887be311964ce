"""`monitor run --input -`: the same engine over a captured stream on stdin, alerts as JSON lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from monitor.synthetic import generate

from .conftest import ROOT, SPEC, stream_messages, write_config


def test_replay_from_stdin_prints_the_alerts_of_the_injected_anomalies(model_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", {}, model_dir)
    lines = b"".join(value + b"\n" for _, value in stream_messages()) + b"not json\n"
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "run", "--input", "-"],
        input=lines, capture_output=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    alerts = [orjson.loads(line) for line in result.stdout.splitlines()]
    _, anomalies = generate(SPEC)
    assert {a["series"] for a in alerts if a["status"] == "firing"} == {a.series for a in anomalies}
    stderr = result.stderr.decode()
    assert "invalid_json" in stderr, "the bad line is reported, not fatal"
    assert f"messages={len(stream_messages()) + 1}" in stderr and "rejected=1" in stderr
