"""deploy/systemd: `systemd-analyze verify` accepts the unit, and its command is one the CLI accepts."""

from __future__ import annotations

import configparser
import shlex
import subprocess

from ..deploy_checks import DEPLOY, VENV_BIN, monitor_args

UNIT = DEPLOY / "systemd/anomaly-monitor.service"


def service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # verify checks that ExecStart exists, so point it at this checkout's monitor.
    exec_start = shlex.split(service_section()["ExecStart"])
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(exec_start[0], str(VENV_BIN / "monitor")))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_unit_runs_the_daemon_and_stops_it_with_sigterm():
    service = service_section()
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].endswith("/bin/monitor")
    args = monitor_args(exec_start[1:])
    assert args["command"] == "run" and args["config"].startswith("/etc/anomaly-monitor/")
    assert service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"] == "2", "a configuration error (exit 2) must not restart in a loop"
