"""What people watch, checked against the real servers.

promtool checks the shipped Prometheus config and rules and runs their unit tests; the dashboards are
checked for structure; then a real Prometheus (the Debian package) scrapes a daemon that processes a
stream with anomalies and invalid records from the real broker, evaluates the shipped rules, and runs
every PromQL expression of every dashboard panel, annotation and rule, with the dashboards' variables
resolved through the same API Grafana uses. Every metric an expression names must be one the daemon
exports.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from kafka import KafkaProducer

from monitor.config.http import HttpSettings
from monitor.observability.exporter import Exporter
from monitor.observability.health import Health
from monitor.observability.http import serve
from tests.unit.test_health import self_signed_cert

from .conftest import SPEC, Daemon, Topics, produce, stream_messages, wait_for, write_config
from .prom_server import Prometheus
from .promql import (
    DASHBOARD_DIR,
    PROMETHEUS_DIR,
    SYNTHETIC,
    Query,
    dashboard_queries,
    dashboard_variables,
    dashboards,
    metric_names,
    rule_groups,
    rule_queries,
    substitute,
)

JOB = "anomaly-monitor"
SCRAPE = "500ms"
GRAFANA_INTERVALS = {"__rate_interval": "5s", "__interval": "2s", "__range": "5m"}
"""What Grafana would put for its interval variables on a short dashboard range at this scrape interval."""
BAD = [
    b"\xff\xfe not utf-8",
    b"{not json",
    b'{"series": "host-00/cpu", "ts": 1767225600, "value": "high"}',
    b'{"series": "host-00/cpu", "ts": 1767225600, "value": 1e999}',
    b'{"ts": 1767225600, "value": 1}',
] * 10
"""50 rejected messages next to 3600 good ones: above AnomalyMonitorInvalidRecords' 1%."""
TAIL_RATE = 150.0
"""Messages per second for the anomalous half, so that every alert stays open across several scrapes."""


def run_tool(*args: str | Path) -> str:
    tool = shutil.which(str(args[0]))
    assert tool, f"{args[0]} is missing: make system-deps installs it (Debian prometheus, prometheus-alertmanager)"
    result = subprocess.run([tool, *map(str, args[1:])], capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, args))}:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_promtool_checks_the_shipped_config_and_rules_and_runs_their_unit_tests():
    run_tool("promtool", "check", "config", PROMETHEUS_DIR / "prometheus.yml")  # and the rule files it names
    run_tool("promtool", "check", "rules", *sorted((PROMETHEUS_DIR / "rules").glob("*.yml")))
    out = run_tool("promtool", "test", "rules", *sorted((PROMETHEUS_DIR / "tests").glob("*.yml")))
    assert "FAILED" not in out
    run_tool("amtool", "check-config", PROMETHEUS_DIR / "alertmanager.yml")


def test_every_rules_file_has_a_test_file_and_every_alert_a_test_that_fires_it():
    tests = {p: yaml.safe_load(p.read_text()) for p in sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))}
    covered = {Path(f).name for doc in tests.values() for f in doc["rule_files"]}
    assert covered == set(rule_groups())
    fired = {
        case["alertname"]
        for doc in tests.values()
        for group in doc["tests"]
        for case in group.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    alerts = {rule["alert"] for rules in rule_groups().values() for rule in rules if "alert" in rule}
    assert alerts == fired, f"alerting rules without a firing test: {alerts - fired}"


def test_dashboards_are_well_formed_and_provisioned():
    found = dashboards()
    assert set(found) == {"overview.json", "series.json"}
    uids = [d["uid"] for d in found.values()]
    assert len(set(uids)) == len(uids)
    for name, d in found.items():
        variables = {v["name"] for v in d["templating"]["list"]}
        assert {"datasource", "job"} <= variables, name
        panels = [p for p in d["panels"] if p["type"] != "row"]
        assert len({p["id"] for p in panels}) == len(panels), f"{name}: duplicate panel ids"
        for panel in panels:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(set(refs)) == len(refs), panel["title"]
        for query in dashboard_queries(name, d):
            substitute(query.expr, {v: "x" for v in variables} | GRAFANA_INTERVALS)  # no unknown variable
    series_variables = {v.name for v in dashboard_variables(found["series.json"])}
    assert {"detector", "series"} <= series_variables
    provisioning = DASHBOARD_DIR.parent / "provisioning"
    [datasource] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "anomaly-monitor.yml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list]:
    """Whatever the test starts (Prometheus, HTTP servers) is stopped at the end, even on failure."""
    started: list = []
    yield started
    for server in started:
        if isinstance(server, Prometheus):
            server.stop()
        else:
            server.shutdown()
            server.server_close()


def test_every_dashboard_and_rule_query_returns_data_from_a_real_prometheus(
    bootstrap, topics, model_dir, tmp_path, start_daemon, monkeypatch, servers
):
    monkeypatch.setenv("MONITOR_LOG_FORMAT", "json")
    messages = stream_messages()
    head_size = SPEC.healthy * SPEC.series
    head = [*messages[:head_size], messages[100]]  # and one duplicate
    tail = messages[head_size:]
    for i, value in enumerate(BAD):  # spread out, so that Prometheus sees the rejections come in
        tail.insert(i * len(tail) // len(BAD), (b"bad", value))
    produce(bootstrap, topics.metrics, head)
    daemon = start_daemon(_daemon_config(tmp_path, topics, model_dir))
    tls_port, password, ca = _tls_target(tmp_path, servers)
    prom = Prometheus(_prometheus_config(daemon.port, tls_port, password, ca), tmp_path / "prometheus")
    servers.append(prom)
    prom.wait_ready()
    t0 = time.time()

    wait_for(lambda: _http_status(daemon, "/readyz") == 200, 60, "the daemon ready", daemon)
    assert _http_status(daemon, "/healthz") == 200
    scraped = f'sum(monitor_messages_total{{job="{JOB}"}}) >= {len(head)}'
    prom.wait_for(lambda: bool(prom.query(scraped)), 30, "the head read and scraped")
    _produce_paced(bootstrap, topics.metrics, tail, TAIL_RATE)
    total = len(head) + len(tail)
    prom.wait_for(lambda: bool(prom.query(f'sum(monitor_messages_total{{job="{JOB}"}}) == {total}')), 60, "all")

    exported = _exported_names(daemon.metrics())
    failures = _run_dashboard_queries(prom, t0, exported) + _run_rule_queries(prom, exported)
    assert not failures, "\n".join(failures)

    seen = {r["metric"]["alertname"] for r in prom.query_range("ALERTS", t0, time.time(), 0.5)}
    assert {"AnomalyDetected", "AnomalyMonitorInvalidRecords"} <= seen, seen
    assert "AnomalyMonitorLoopStuck" not in seen, "a starting daemon must not look stuck"
    unhealthy = [r for g in prom.api("rules")["groups"] for r in g["rules"] if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    assert prom.query('up{job="tls-check"} == 1'), "Prometheus must scrape the endpoint over TLS with basic auth"

    events = _json_events(daemon)
    alerts = daemon.metric_sum("monitor_alerts_total")
    assert alerts >= 2 and sum(e["event"] == "alert" for e in events) == alerts
    assert {"started", "model_loaded", "ready", "rejected"} <= {e["event"] for e in events}

    assert daemon.stop() == 0
    assert [e["event"] for e in _json_events(daemon)][-2:] == ["stopping", "stopped"]
    [down] = [r["expr"] for r in rule_groups()["alerts.rules.yml"] if r.get("alert") == "AnomalyMonitorDown"]
    prom.wait_for(lambda: bool(prom.query(down)), 15, "AnomalyMonitorDown's expression once the daemon stops")


def _daemon_config(tmp_path: Path, topics: Topics, model_dir: Path) -> Path:
    kafka = {"metrics_topic": topics.metrics, "alert_topic": topics.alerts, "dead_letter_topic": topics.dead_letter}
    path = write_config(tmp_path / "config.yaml", {"kafka": {**kafka, "group_id": topics.group}}, model_dir)
    doc = yaml.safe_load(path.read_text())
    doc["exporter"]["max_series"] = SPEC.series - 1  # one series is always left out, and counted
    path.write_text(yaml.safe_dump(doc))
    return path


def _tls_target(tmp_path: Path, servers: list) -> tuple[int, str, Path]:
    """An endpoint with TLS and basic auth in this process, for Prometheus to scrape as a second job."""
    cert, key = self_signed_cert(tmp_path)
    password = "scrape-me"
    settings = HttpSettings(
        tls_cert_file=cert, tls_key_file=key, basic_auth_username="prom", basic_auth_password=password
    )
    server = serve(Exporter(), Health(), "127.0.0.1", 0, settings)
    servers.append(server)
    return server.server_port, password, cert


def _prometheus_config(daemon_port: int, tls_port: int, password: str, ca: Path) -> dict:
    """The shipped prometheus.yml with this test's targets, a fast scrape and no Alertmanager."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": SCRAPE, "scrape_timeout": SCRAPE, "evaluation_interval": SCRAPE}
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    del config["alerting"]
    [job] = config["scrape_configs"]
    assert job["job_name"] == JOB, "the rules and dashboards select this job name"
    job["static_configs"] = [{"targets": [f"127.0.0.1:{daemon_port}"]}]
    config["scrape_configs"].append(
        {
            "job_name": "tls-check",
            "scheme": "https",
            "tls_config": {"ca_file": str(ca)},
            "basic_auth": {"username": "prom", "password": password},
            "static_configs": [{"targets": [f"127.0.0.1:{tls_port}"]}],
        }
    )
    return config


def _http_status(daemon: Daemon, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}{path}", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def _produce_paced(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], per_second: float) -> None:
    """Send at a steady rate, as live producers do (pacing, not waiting for a condition)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    start = time.monotonic()
    for i, (key, value) in enumerate(messages):
        ahead = start + i / per_second - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def _exported_names(exposition: str) -> set[str]:
    """Sample names on /metrics (`monitor_messages_total`, `..._bucket`...), as PromQL selects them."""
    lines = [line for line in exposition.splitlines() if line and not line.startswith("#")]
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in lines}


def _run_dashboard_queries(prom: Prometheus, t0: float, exported: set[str]) -> list[str]:
    """Resolve each dashboard's variables like Grafana does, then run every panel and annotation query."""
    alerted = prom.query(f'max by (series) (max_over_time(anomaly_active{{job="{JOB}"}}[5m])) == 1')
    assert alerted, "no scrape saw an open alert: the drill-down would have no annotation to show"
    preferred = {"job": JOB, "detector": "default", "series": sorted(r["metric"]["series"] for r in alerted)[0]}
    failures = []
    for name, dashboard in dashboards().items():
        values = dict(GRAFANA_INTERVALS)
        for variable in dashboard_variables(dashboard):
            match = substitute(variable.match, values) if variable.match else None
            options = prom.label_values(variable.label, match, t0)
            assert preferred[variable.name] in options, f"{name}: ${variable.name} offers {options}"
            values[variable.name] = preferred[variable.name]
        for query in dashboard_queries(name, dashboard):
            failures += _check(prom, Query(query.where, substitute(query.expr, values), query.instant), exported, t0)
    return failures


def _run_rule_queries(prom: Prometheus, exported: set[str]) -> list[str]:
    recorded = {rule["record"] for rules in rule_groups().values() for rule in rules if "record" in rule}
    return [failure for query in rule_queries() for failure in _check(prom, query, exported | recorded, None)]


def _check(prom: Prometheus, query: Query, known: set[str], t0: float | None) -> list[str]:
    unknown = metric_names(query.expr) - known - SYNTHETIC
    if unknown:
        return [f"{query.where}: names metrics the daemon does not export: {sorted(unknown)} in {query.expr}"]
    if query.instant or t0 is None:
        result = prom.query(query.expr)
    else:
        result = prom.query_range(query.expr, t0, time.time(), 0.5)
    return [] if result else [f"{query.where}: no data for {query.expr}"]


def _json_events(daemon: Daemon) -> list[dict]:
    """Every line the daemon logged must be one JSON object (--log-format json); returns the events."""
    events = []
    for line in filter(None, daemon.output().splitlines()):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}")
        if "event" in entry:
            events.append(entry)
    return events
