"""monitor.cli.main: check-config, --version, exit codes and the one-line config error on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor import __version__
from monitor.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    for var in ("MONITOR_KAFKA_BOOTSTRAP_SERVERS", "MONITOR_KAFKA_SASL_USERNAME", "MONITOR_KAFKA_SASL_PASSWORD"):
        monkeypatch.delenv(var, raising=False)


def test_check_config_on_the_repo_config(capsys):
    assert main(["--config", str(REPO / "config.yaml"), "check-config"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{REPO / 'config.yaml'}: ok\n")
    assert "127.0.0.1:9092" in out
    assert "detector default" in out and "window 32" in out and "stride 1" in out
    assert err == ""


def test_check_config_default_path_is_config_yaml_in_the_working_directory(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith("config.yaml: ok")


def test_check_config_bad_value_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"detectors": [{"name": "default", "window": "abc"}]}))
    assert main(["--config", str(path), "check-config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f'{path}: detectors[0].window: must be an integer from 8 to 4096, got "abc"\n'


def test_check_config_unknown_key_exits_2(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("kafka:\n  bootstrap: x:9092\n")
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"{path}: kafka.bootstrap: unknown key")


def test_check_config_missing_file_exits_2(tmp_path, capsys):
    path = tmp_path / "nope.yaml"
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: cannot read")


def test_check_config_honours_env_override(capsys, monkeypatch):
    monkeypatch.setenv("MONITOR_KAFKA_BOOTSTRAP_SERVERS", "kafka-9:9093")
    assert main(["--config", str(REPO / "config.yaml"), "check-config"]) == 0
    assert "kafka-9:9093" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"monitor {__version__}"


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "frobnicate" in capsys.readouterr().err
