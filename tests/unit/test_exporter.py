"""monitor.observability.exporter through the real engine (a tiny numpy scorer): names, types and help of every metric,
the per-series cap, latest values, evictions, warm-up, model swaps, lag. `promtool check metrics` lints
the exposition against Prometheus' naming conventions."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from monitor.engine.alerting import AlertSettings
from monitor.engine.detector import Detector, DetectorSettings, Engine
from monitor.engine.threshold import ThresholdSettings
from monitor.engine.verdicts import Outcome, VerdictBatch
from monitor.observability import exporter as exporter_module
from monitor.observability.exporter import LATENCY_BUCKETS, BatchHistogram, Exporter
from monitor.records import Point
from tests.unit.test_detector import T0, FakeScorer

WINDOW = 8
SETTINGS = DetectorSettings(
    window=WINDOW,
    stride=1,
    threshold=ThresholdSettings(warmup=2),
    alerting=AlertSettings(for_windows=1, resolve_after=1),
)
METRICS = {
    "anomaly_score": "gauge",
    "anomaly_threshold": "gauge",
    "anomaly_active": "gauge",
    "anomaly_value": "gauge",
    "monitor_alerts_open": "gauge",
    "monitor_series_not_exported": "gauge",
    "monitor_messages": "counter",
    "monitor_points_dropped": "counter",
    "monitor_windows_scored": "counter",
    "monitor_alerts": "counter",
    "monitor_feedback": "counter",
    "monitor_feedback_precision": "gauge",
    "monitor_scoring_seconds": "histogram",
    "monitor_end_to_end_latency_seconds": "histogram",
    "monitor_consumer_lag": "gauge",
    "monitor_series_tracked": "gauge",
    "monitor_series_warming_up": "gauge",
    "monitor_model_info": "gauge",
    "monitor_last_commit_timestamp_seconds": "gauge",
    "monitor_last_poll_timestamp_seconds": "gauge",
    "process_cpu_seconds": "counter",
    "process_max_fds": "gauge",
    "process_open_fds": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_virtual_memory_bytes": "gauge",
}


class Rig:
    """An engine and an exporter wired as the service wires them, fed point by point."""

    def __init__(self, max_series: int = 100, settings: DetectorSettings = SETTINGS, **scorer: object) -> None:
        self.engine = Engine([Detector(settings, FakeScorer(window=settings.window, **scorer))])
        self.exporter = Exporter(max_series)
        self.exporter.set_model("default", "fake-1", "fake")
        self.step = 0

    def feed(self, values: dict[str, float | dict[str, float]], steps: int = 1) -> None:
        for _ in range(steps):
            ts = T0 + 60 * self.step
            batch = [Point(s, ts, v if isinstance(v, dict) else {"value": v}) for s, v in values.items()]
            self.exporter.observe_outcome(self.engine.process(batch))
            self.step += 1

    def samples(self, name: str) -> dict[tuple[str, ...], float]:
        """Samples of one metric family, keyed by their label values (labels in alphabetical order)."""
        [family] = [f for f in text_string_to_metric_families(self.exporter.render().decode()) if f.name == name]
        return {tuple(s.labels.values()): s.value for s in family.samples}


def quiet(n: int) -> dict[str, float]:
    """n series at steady levels: series i scores about (0.01 * (i + 1))**2."""
    return {f"s{i}": 0.01 * (i + 1) for i in range(n)}


def test_every_metric_has_its_type_help_and_conventional_name():
    rig = Rig()
    rig.feed(quiet(2), WINDOW + 3)
    families = {f.name: f for f in text_string_to_metric_families(rig.exporter.render().decode())}
    assert {name: f.type for name, f in families.items()} == METRICS
    for family in families.values():
        assert family.documentation, family.name
        if family.type == "counter":
            assert {s.name for s in family.samples} <= {family.name + "_total"}, "no *_created series"


def test_promtool_finds_no_naming_problem():
    rig = Rig()
    rig.feed(quiet(2), WINDOW + 3)
    rig.exporter.messages.labels("metrics", "ok").inc()
    rig.exporter.points_dropped.labels("late").inc()
    rig.exporter.latency.observe_many(np.array([0.2]))
    rig.exporter.set_lag({("metrics", 0): 3})
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed; make system-deps installs it"
    result = subprocess.run([promtool, "check", "metrics"], input=rig.exporter.render(), capture_output=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout.decode() + result.stderr.decode()


def test_the_cap_keeps_open_alerts_then_the_highest_scores_and_counts_the_rest():
    rig = Rig(max_series=2)
    rig.feed(quiet(4), WINDOW + 3)
    assert set(rig.samples("anomaly_score")) == {("default", "s3"), ("default", "s2")}
    assert rig.samples("monitor_series_not_exported") == {(): 2.0}
    rig.feed({**quiet(4), "s0": 3.0})  # the lowest scorer jumps: highest score and an open alert
    rig.feed({**quiet(4), "s0": 3.0, "s1": 2.0})
    assert rig.samples("anomaly_active") == {("default", "s0"): 1.0, ("default", "s1"): 1.0}
    assert rig.samples("monitor_alerts_open") == {("default",): 2.0}


def test_every_open_alert_is_exported_even_beyond_the_cap():
    rig = Rig(max_series=1)
    rig.feed(quiet(3), WINDOW + 3)
    rig.feed({"s0": 3.0, "s1": 2.0, "s2": 0.03})
    assert rig.samples("anomaly_active") == {("default", "s0"): 1.0, ("default", "s1"): 1.0}
    assert rig.samples("monitor_series_not_exported") == {(): 1.0}


def test_the_latest_value_of_every_feature_is_exported():
    settings = DetectorSettings(window=WINDOW, stride=1, features=("cpu", "mem"))
    rig = Rig(settings=settings, features=("cpu", "mem"))
    rig.feed({"web-01": {"cpu": 0.5, "mem": 0.25}}, WINDOW)
    rig.feed({"web-01": {"cpu": 0.75, "mem": 0.125}})
    assert rig.samples("anomaly_value") == {("default", "cpu", "web-01"): 0.75, ("default", "mem", "web-01"): 0.125}


def test_evicted_series_leave_the_per_series_gauges():
    settings = DetectorSettings(window=WINDOW, stride=1, max_series=2)
    rig = Rig(settings=settings)
    rig.feed(quiet(2), WINDOW)
    assert {series for _, series in rig.samples("anomaly_score")} == {"s0", "s1"}
    rig.feed({"s2": 0.5}, WINDOW)  # evicts s0, the least recently updated
    assert {series for _, series in rig.samples("anomaly_score")} == {"s1", "s2"}


@pytest.mark.parametrize("fold_rows", [1, 7, 10**9])
def test_verdicts_between_scrapes_show_as_if_scraped_after_every_step(monkeypatch, fold_rows):
    """Verdicts wait as columns until a scrape, an eviction, an alert or `FOLD_ROWS` of them fold them in:
    whenever that happens, a scrape shows each series' last window, no evicted series, the open alerts."""
    monkeypatch.setattr(exporter_module, "FOLD_ROWS", fold_rows)
    settings = DetectorSettings(
        window=WINDOW, stride=1, max_series=3, threshold=SETTINGS.threshold, alerting=SETTINGS.alerting
    )
    every_step, at_the_end = Rig(settings=settings), Rig(settings=settings)
    rng = np.random.default_rng(7)
    families = ("anomaly_score", "anomaly_threshold", "anomaly_value", "anomaly_active", "monitor_alerts_open")
    for step in range(120):
        chosen = ("s0", "s1", "s2") if step < 60 else ("s1", "s2", "s3")  # s3 evicts s0
        values = {name: 0.1 + 0.01 * float(rng.random()) for name in chosen}
        if step in (40, 41, 95):  # s1 fires and resolves, then fires again and stays open
            values["s1"] = 3.0
        for rig in (every_step, at_the_end):
            rig.feed(values)
        seen = {name: every_step.samples(name) for name in families}
    assert {name: at_the_end.samples(name) for name in families} == seen
    assert {series for _, series in seen["anomaly_score"]} == {"s1", "s2", "s3"}
    fired = every_step.exporter.alerts.labels("default", "firing")._value.get()
    resolved = every_step.exporter.alerts.labels("default", "resolved")._value.get()
    assert (fired, resolved) == (2, 1)
    assert seen["anomaly_active"][("default", "s1")] == 1.0


def test_warming_up_counts_series_whose_window_fills_or_threshold_warms_up():
    rig = Rig()
    detector = rig.engine.detectors[0]
    rig.feed({"a": 0.1}, WINDOW - 1)  # window not full yet
    assert detector.warming_up() == 1
    rig.feed({"a": 0.1, "b": 0.1}, 1)  # a: first window, in warm-up; b: filling
    assert detector.warming_up() == 2
    rig.feed({"a": 0.1}, 2)  # a: past warmup=2 windows
    assert detector.warming_up() == 1


def test_a_model_swap_replaces_the_info_series_and_counters_start_at_zero():
    exporter = Exporter()
    exporter.set_model("default", "v1", "lstm")
    exporter.set_model("default", "v2", "dense")
    exporter.set_model("other", "v1", "lstm")
    text = exporter.render().decode()
    assert 'monitor_model_info{detector="default",kind="dense",version="v2"} 1.0' in text
    assert 'version="v1"' not in text.replace('detector="other",kind="lstm",version="v1"', "")
    for line in (
        'monitor_windows_scored_total{detector="default"} 0.0',
        'monitor_alerts_total{detector="default",status="firing"} 0.0',
        'monitor_alerts_total{detector="other",status="resolved"} 0.0',
        'monitor_scoring_seconds_count{detector="other"} 0.0',
        'monitor_alerts_open{detector="other"} 0.0',
    ):
        assert line in text


def test_lag_of_partitions_no_longer_assigned_disappears():
    exporter = Exporter()
    exporter.set_lag({("metrics", 0): 5, ("metrics", 1): 7})
    exporter.set_lag({("metrics", 1): 2})
    text = exporter.render().decode()
    assert 'monitor_consumer_lag{partition="1",topic="metrics"} 2.0' in text
    assert 'partition="0"' not in text


@pytest.mark.parametrize("max_series", [1, 3])
def test_scrapes_never_fail_on_an_empty_exporter(max_series):
    assert b"monitor_series_not_exported 0.0" in Exporter(max_series).render()


def test_batch_histogram_exposes_what_a_client_histogram_would():
    values = np.array([0.0, 0.01, 0.011, 0.3, 1.0, 7.5, 400.0, 0.05])
    batched = BatchHistogram("latency_seconds", "help", LATENCY_BUCKETS)
    batched.observe_many(values[:3])
    batched.observe_many(values[3:])
    batched.observe_many(np.array([]))
    reference = Histogram("latency_seconds", "help", buckets=LATENCY_BUCKETS, registry=None)
    for v in values:
        reference.observe(float(v))
    [ours], [theirs] = list(batched.collect()), reference.collect()
    assert [(s.name, s.labels, s.value) for s in ours.samples] == [
        (s.name, s.labels, s.value) for s in theirs.samples if not s.name.endswith("_created")
    ]


@pytest.mark.parametrize("seed", range(3))
def test_the_folded_columns_keep_each_series_last_verdict_through_evictions_and_row_reuse(seed):
    """The exporter's columns against a dict of each series' last verdict: polls that repeat series,
    evictions whose rows new series take over, a detector whose features change, NaN scores ranked last
    by the cap."""
    rng = np.random.default_rng(seed)
    exporter, expected = Exporter(max_series=5), {}
    for _ in range(60):
        features = ("value",) if rng.random() < 0.8 else ("cpu", "mem")
        names = [f"s{i}" for i in rng.integers(0, 12, int(rng.integers(1, 9)))]
        n = len(names)
        score = np.where(rng.random(n) < 0.1, np.nan, rng.random(n))
        values = rng.random((n, len(features)))
        batch = VerdictBatch.empty("d", features, names, [{}] * n, [T0] * n, [T0] * n, values, values)
        batch.score, batch.threshold = score, score + 1
        evicted = [("d", f"s{i}") for i in rng.integers(0, 12, int(rng.integers(0, 3)))]
        exporter.observe_outcome(Outcome(batches=[batch], evicted=evicted))  # evictions before the batch
        for _, name in evicted:
            expected.pop(name, None)
        for i, name in enumerate(names):
            expected[name] = (score[i], score[i] + 1, dict(zip(features, values[i].tolist(), strict=True)))
        families = {f.name: f.samples for f in text_string_to_metric_families(exporter.render().decode())}
        scores = {s.labels["series"]: s.value for s in families["anomaly_score"]}
        thresholds = {s.labels["series"]: s.value for s in families["anomaly_threshold"]}
        by_feature: dict[str, dict[str, float]] = {}
        for s in families["anomaly_value"]:
            by_feature.setdefault(s.labels["series"], {})[s.labels["feature"]] = s.value
        [dropped] = families["monitor_series_not_exported"]
        assert len(scores) == min(5, len(expected)) and len(scores) + dropped.value == len(expected)
        for name, value in scores.items():
            np.testing.assert_equal((value, thresholds[name], by_feature[name]), expected[name])
        ranked = sorted((np.nan_to_num(score, nan=-1.0) for score, *_ in expected.values()), reverse=True)
        assert sorted(np.nan_to_num(list(scores.values()), nan=-1.0), reverse=True) == ranked[: len(scores)]
