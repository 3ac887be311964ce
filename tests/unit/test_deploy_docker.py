"""Dockerfile and deploy/docker-compose.yml, checked as far as a machine without a Docker engine allows:
hadolint and the Compose specification's JSON schema, then cross-checks against the code and the files
the stack mounts (ports, paths, commands parsed by the real CLI, job names, datasource addresses)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.config import load_config

from ..deploy_checks import DEPLOY, ROOT, VENV_BIN, monitor_args, port_of, served_paths, yaml_docs

COMPOSE = DEPLOY / "docker-compose.yml"


def dockerfile_final_stage() -> dict[str, list[str]]:
    """Instruction → arguments of the last stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    stage: dict[str, list[str]] = {}
    for line in lines[last_from:]:
        instruction, _, args = line.partition(" ")
        stage.setdefault(instruction, []).append(args.strip())
    return stage


def exec_form(args: str) -> list[str]:
    return json.loads(args)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_hadolint_passes():
    result = subprocess.run([str(VENV_BIN / "hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_the_documented_config_as_a_non_root_user_with_a_healthcheck():
    stage = dockerfile_final_stage()
    [user] = stage["USER"]
    assert user.split(":")[0] not in ("0", "root")
    entrypoint, cmd = exec_form(stage["ENTRYPOINT"][0]), exec_form(stage["CMD"][0])
    assert entrypoint[0] == "monitor"
    args = monitor_args(entrypoint[1:] + cmd)
    assert args["command"] == "run"
    assert ["config.yaml", args["config"]] in [c.split() for c in stage["COPY"]]
    port = port_of(args["listen"])
    assert stage["EXPOSE"] == [str(port)]
    [healthcheck] = stage["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck
    assert "/healthz" in served_paths()


def test_torch_comes_from_the_cpu_index_and_every_copied_path_reaches_the_build():
    text = (ROOT / "Dockerfile").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    copied = [src for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M) for src in line.split()[:-1]]
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    for src in copied:
        assert (ROOT / src).exists(), src
        # .dockerignore excludes everything, then re-includes: the last matching pattern wins.
        included = False
        for pattern in ignore:
            negated = pattern.startswith("!")
            if fnmatch.fnmatch(src.rstrip("/"), pattern.lstrip("!").rstrip("/")):
                included = negated
        assert included, f"{src} is excluded by .dockerignore"


def test_compose_file_matches_the_compose_specification():
    schema_check = [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)]
    result = subprocess.run(schema_check, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_mounts_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"


def test_compose_kafka_is_the_official_image_in_kraft_mode_and_the_monitor_reaches_it(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env)
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    for name in ("train", "monitor", "producer"):
        assert compose["services"][name]["environment"]["MONITOR_KAFKA_BOOTSTRAP_SERVERS"] == advertised["PLAINTEXT"]


def test_compose_commands_parse_and_agree_with_the_image(compose):
    stage = dockerfile_final_stage()
    entrypoint = exec_form(stage["ENTRYPOINT"][0])
    config_path = monitor_args([*entrypoint[1:], "check-config"])["config"]
    config = load_config(ROOT / "config.yaml")
    services = compose["services"]

    run = monitor_args(entrypoint[1:] + services["monitor"]["command"])
    port = port_of(run["listen"])
    assert f"{port}:{port}" in services["monitor"]["ports"]
    produce = monitor_args(entrypoint[1:] + services["producer"]["command"])
    assert produce["command"] == "produce" and produce["topic"] == config.kafka.metrics_topic

    script = services["train"]["command"][0]
    calls = [shlex.split(call) for call in re.findall(r"monitor [^&|;{}]+", script)]
    assert [monitor_args(argv[1:])["command"] for argv in calls] == ["produce", "train"]
    workdir = stage["WORKDIR"][-1]
    for name in ("train", "monitor", "producer"):
        mounts = dict(v.split(":")[:2] for v in services[name]["volumes"])
        assert mounts["../config.yaml"] == config_path
    model_dir = Path(workdir) / config.detectors[0].model.path.relative_to(ROOT)
    for name in ("train", "monitor"):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert any(model_dir.is_relative_to(target) for target, source in mounts.items() if source == "models")


def test_compose_prometheus_scrapes_the_monitor_and_loads_the_shipped_rules(compose, tmp_path):
    prometheus = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in prometheus["volumes"]}
    config_file = mounts["/etc/prometheus/prometheus.yml"]
    check = subprocess.run(["promtool", "check", "config", "--syntax-only", str(config_file)], capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    scrape = yaml.safe_load(config_file.read_text())
    [job] = scrape["scrape_configs"]
    shipped = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert job["job_name"] in {j["job_name"] for j in shipped["scrape_configs"]}
    run = monitor_args(["run", *compose["services"]["monitor"]["command"][1:]])
    assert job["static_configs"][0]["targets"] == [f"monitor:{port_of(run['listen'])}"]
    for pattern in scrape["rule_files"]:
        target, _, glob = pattern.rpartition("/")
        rule_files = sorted(mounts[target].glob(glob))
        assert rule_files, f"{pattern} matches no file in {mounts[target]}"
        check = subprocess.run(["promtool", "check", "rules", *map(str, rule_files)], capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_compose_grafana_provisions_the_shipped_dashboards_from_the_compose_prometheus(compose):
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in grafana["volumes"]}
    [datasource] = yaml.safe_load(mounts["/etc/grafana/provisioning/datasources/prometheus.yml"].read_text())[
        "datasources"
    ]
    port = compose["services"]["prometheus"]["ports"][0].split(":")[1]
    assert datasource["url"] == f"http://prometheus:{port}"
    providers = mounts["/etc/grafana/provisioning/dashboards"]
    paths = {p["options"]["path"] for f in providers.glob("*.yml") for p in yaml_docs(f)[0]["providers"]}
    for path in paths:
        assert path in mounts, f"dashboard provider reads {path}, which nothing mounts"
        assert list(mounts[path].glob("*.json")), f"no dashboards in {mounts[path]}"
