"""deploy/k8s: every manifest against the Kubernetes API schema (kubernetes-validate, strict), the
Prometheus Operator resources against the rules they copy (promtool), and cross-checks with the code:
the CLI parses the container command, ports, probes, paths and names agree across files."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from monitor.config import load_config
from monitor.kafka.client import FLUSH_TIMEOUT_S

from ..deploy_checks import DEPLOY, ROOT, monitor_args, port_of, served_paths, yaml_docs

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes still commonly run: the manifests must be valid there (and so later)."""
CUSTOM_KINDS = {"PodMonitor", "PrometheusRule"}
ALLOWED_CONFIG_DIFFERENCES = {
    ("kafka", "bootstrap_servers"),
    ("exporter", "listen"),
    ("detectors", 0, "model", "path"),
}


@pytest.fixture(scope="module")
def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def resources(kustomization) -> dict[str, dict]:
    """kind → object, as `kubectl apply -k` would create them (the generated ConfigMap included)."""
    objects = [doc for name in kustomization["resources"] for doc in yaml_docs(K8S / name)]
    for generator in kustomization["configMapGenerator"]:
        data = {Path(f).name: (K8S / f).read_text() for f in generator["files"]}
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    by_kind = {o["kind"]: o for o in objects}
    assert len(by_kind) == len(objects), "one object per kind is what these checks assume"
    return by_kind


@pytest.fixture(scope="module")
def container(resources) -> dict:
    [container] = resources["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_every_manifest_is_listed_and_every_listed_file_exists(kustomization):
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "config.yaml"}
    assert set(kustomization["resources"]) == manifests
    for generator in kustomization["configMapGenerator"]:
        assert all((K8S / f).is_file() for f in generator["files"])


def test_builtin_resources_match_the_kubernetes_schema(resources):
    for kind, obj in resources.items():
        if kind not in CUSTOM_KINDS:
            namespaced = {**obj, "metadata": {**obj["metadata"], "namespace": "anomaly-monitor"}}
            kubernetes_validate.validate(namespaced, KUBERNETES_VERSION, strict=True)


def test_configmap_is_the_repository_config_with_in_cluster_values(resources):
    k8s = load_config(K8S / "config.yaml")  # parses: no unknown key, every value in range
    assert k8s.listen_host == "0.0.0.0"
    ours, theirs = yaml.safe_load((ROOT / "config.yaml").read_text()), yaml.safe_load((K8S / "config.yaml").read_text())
    assert _differences(ours, theirs) == ALLOWED_CONFIG_DIFFERENCES


def _differences(a: object, b: object, path: tuple = ()) -> set[tuple]:
    if isinstance(a, dict) and isinstance(b, dict):
        return {d for k in a.keys() | b.keys() for d in _differences(a.get(k), b.get(k), (*path, k))}
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return {d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, (*path, i))}
    return set() if a == b else {path}


def test_container_runs_the_mounted_config_on_the_probed_port(resources, container):
    command = container["command"] + container["args"]
    assert command[0] == "monitor"
    args = monitor_args(command[1:])
    assert args["command"] == "run"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in resources["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert Path(args["config"]).parent == Path(mounts["config"])
    assert volumes["config"]["configMap"]["name"] == resources["ConfigMap"]["metadata"]["name"]
    assert Path(args["config"]).name in resources["ConfigMap"]["data"]

    config = load_config(K8S / "config.yaml")
    [port] = container["ports"]
    assert port["containerPort"] == config.listen_port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
        assert container[probe]["httpGet"]["path"] in served_paths()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert resources["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    assert resources["Service"]["spec"]["ports"][0]["port"] == port_of(f":{config.listen_port}")


def test_models_come_from_the_claim_and_the_pod_runs_as_the_image_user(resources, container):
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert (
        volumes["models"]["persistentVolumeClaim"]["claimName"]
        == resources["PersistentVolumeClaim"]["metadata"]["name"]
    )
    for detector in load_config(K8S / "config.yaml").detectors:
        assert detector.model.path.is_relative_to(mount["mountPath"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile
    assert pod["terminationGracePeriodSeconds"] > FLUSH_TIMEOUT_S, "SIGTERM must have time to flush and commit"
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]


def test_replicas_share_one_consumer_group(resources):
    assert resources["Deployment"]["spec"]["replicas"] >= 2
    assert load_config(K8S / "config.yaml").kafka.group_id, "one group_id for every replica"


def test_pod_monitor_scrapes_the_pods_under_the_job_name_the_rules_select(resources, container):
    monitor = resources["PodMonitor"]
    labels = resources["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == container["ports"][0]["name"] and endpoint["path"] == "/metrics"
    shipped = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert labels[monitor["spec"]["jobLabel"]] in {job["job_name"] for job in shipped["scrape_configs"]}


def test_prometheus_rule_carries_the_shipped_rules(resources, tmp_path):
    rule = resources["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    shipped = [g for f in sorted((DEPLOY / "prometheus/rules").glob("*.rules.yml")) for g in yaml_docs(f)[0]["groups"]]
    assert rule["spec"]["groups"] == shipped, "run: python deploy/k8s/render.py"
    spec = tmp_path / "spec.rules.yml"
    spec.write_text(yaml.safe_dump(rule["spec"]))
    check = subprocess.run(["promtool", "check", "rules", str(spec)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("name", ["config.yaml", "prometheusrule.yaml"])
def test_generated_files_are_up_to_date(name):
    spec = importlib.util.spec_from_file_location("render", K8S / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    assert render.RENDERED[name]() == (K8S / name).read_text(), "run: python deploy/k8s/render.py"
