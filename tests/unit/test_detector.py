"""monitor.engine.detector: Detector and Engine end to end with a tiny numpy scorer (no torch)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from monitor.engine.alerting import AlertSettings
from monitor.engine.detector import Detector, DetectorSettings, Engine
from monitor.engine.scoring import Scorer, Scores
from monitor.engine.threshold import ThresholdSettings
from monitor.errors import ModelError
from monitor.records import Point, alert_id

REPO = Path(__file__).resolve().parents[2]
T0 = 1795723200.0
WINDOW = 8


class FakeScorer:
    """Per-feature error = mean squared value over the window; score = their sum. Counts its calls."""

    def __init__(self, window: int = WINDOW, features: Sequence[str] = ("value",), baseline=None) -> None:
        self._window = window
        self._features = tuple(features)
        self._baseline = np.linspace(0.005, 0.015, 64) if baseline is None else np.asarray(baseline, dtype=float)
        self.calls: list[tuple[list[str], tuple[int, ...]]] = []

    @property
    def version(self) -> str:
        return "fake-1"

    @property
    def kind(self) -> str:
        return "fake"

    @property
    def features(self) -> tuple[str, ...]:
        return self._features

    @property
    def window(self) -> int:
        return self._window

    def score(self, series: Sequence[str], batch: np.ndarray, start=None, end=None) -> Scores:
        assert batch.ndim == 3 and batch.shape[1:] == (self._window, len(self._features))
        assert len(series) == batch.shape[0]
        self.calls.append((list(series), batch.shape))
        errors = (batch**2).mean(axis=1)
        return Scores(scores=errors.sum(axis=1), feature_errors=errors)

    def baseline_scores(self) -> np.ndarray:
        return self._baseline


def test_fake_scorer_follows_the_protocol():
    scorer: Scorer = FakeScorer()
    assert scorer.kind == "fake" and scorer.version == "fake-1"
    assert scorer.score(["a"], np.ones((1, WINDOW, 1))).scores.tolist() == [1.0]


def settings(name: str = "default", series: str = "*", features=("value",), **kw) -> DetectorSettings:
    return DetectorSettings(
        name=name,
        series=series,
        features=tuple(features),
        window=kw.pop("window", WINDOW),
        stride=kw.pop("stride", 1),
        max_series=kw.pop("max_series", 1000),
        threshold=kw.pop("threshold", ThresholdSettings(warmup=2, history=256, k=4.0, smoothing=1)),
        alerting=kw.pop("alerting", AlertSettings(for_windows=2, resolve_after=3, critical_ratio=2.0)),
    )


def detector(**kw) -> tuple[Detector, FakeScorer]:
    scorer = FakeScorer(window=kw.get("window", WINDOW), features=kw.get("features", ("value",)))
    return Detector(settings(**kw), scorer), scorer


def normal(i: int) -> float:
    return 0.1 if i % 2 else -0.1  # mean square 0.01, like the baseline


def pt(series: str, i: int, value: float | dict[str, float]) -> Point:
    values = value if isinstance(value, dict) else {"value": value}
    return Point(series, T0 + 60.0 * i, values, {"host": series.split("/")[0]})


def test_spike_fires_one_alert_and_resolves_it():
    d, _ = detector()
    engine = Engine([d])
    spike_at = 40
    stream = [pt("web-01/cpu", i, 5.0 if i == spike_at else normal(i)) for i in range(80)]
    verdicts, alerts = [], []
    for point in stream:  # one point per poll, like a slow topic
        outcome = engine.process([point])
        verdicts += outcome.verdicts
        alerts += outcome.alerts
    assert len(verdicts) == 80 - WINDOW + 1
    assert [a.status for a in alerts] == ["firing", "resolved"]
    firing, resolved = alerts
    spike_ts = T0 + 60.0 * spike_at
    assert firing.started_at == spike_ts  # the first window that holds the spike
    assert firing.at == spike_ts + 60.0  # for_windows=2
    assert firing.severity == "critical"
    assert firing.model_version == "fake-1"
    assert firing.detector == "default" and firing.series == "web-01/cpu"
    assert dict(firing.labels) == {"host": "web-01"}
    assert firing.alert_id == resolved.alert_id == alert_id("default", "web-01/cpu", spike_ts)
    # The spike stays in the window for WINDOW points; the third normal window after it resolves.
    assert resolved.ended_at == spike_ts + 60.0 * (WINDOW - 1 + 3)
    anomalous = [v.ts for v in verdicts if v.anomalous]
    assert anomalous == [spike_ts + 60.0 * k for k in range(WINDOW)]
    assert all(v.threshold > 0 for v in verdicts)
    assert d.alerts.firing() == []


def test_same_stream_in_one_batch_gives_the_same_alerts():
    stream = [pt("web-01/cpu", i, 5.0 if i == 40 else normal(i)) for i in range(80)]
    one_by_one = Engine([detector()[0]])
    expected = [a for p in stream for a in one_by_one.process([p]).alerts]
    batched = Engine([detector()[0]])
    assert batched.process(stream[:50]).alerts + batched.process(stream[50:]).alerts == expected


def test_interleaved_series_in_one_batch_judge_exactly_as_one_point_at_a_time():
    """Several windows of several series in one call are judged in rounds, each series in its own order."""
    rng = np.random.default_rng(3)
    names = ["a", "b", "c"]
    stream = [
        pt(name, i, 6.0 if (name, i) in {("a", 30), ("b", 31), ("c", 60)} else normal(i) + rng.normal(0, 0.01))
        for i in range(90)
        for name in rng.permutation(names)
    ]
    single = Engine([detector(stride=1)[0]])
    outcomes = [single.process([p]) for p in stream]
    expected = [(v.series, v.ts, v.score, v.threshold, v.anomalous) for o in outcomes for v in o.verdicts]
    batched = Engine([detector(stride=1)[0]])
    result = [batched.process(stream[i : i + 97]) for i in range(0, len(stream), 97)]
    verdicts = [(v.series, v.ts, v.score, v.threshold, v.anomalous) for o in result for v in o.verdicts]
    assert sorted(verdicts) == sorted(expected)
    alerts = [a for o in result for a in o.alerts]
    assert alerts == [a for o in outcomes for a in o.alerts]
    assert {a.series for a in alerts if a.status == "firing"} == set(names)


def test_one_scorer_call_per_process_even_with_many_series_ready():
    d, scorer = detector(stride=1)
    engine = Engine([d])
    names = [f"host-{n}/cpu" for n in range(20)]
    points = [pt(name, i, normal(i)) for i in range(WINDOW) for name in names]
    outcome = engine.process(points)
    assert len(scorer.calls) == 1
    series, shape = scorer.calls[0]
    assert shape == (20, WINDOW, 1)
    assert sorted(series) == sorted(names)
    assert len(outcome.verdicts) == 20
    engine.process([pt(name, WINDOW, normal(WINDOW)) for name in names])
    assert len(scorer.calls) == 2


def test_several_windows_of_one_series_in_one_process_call():
    d, scorer = detector(stride=1)
    outcome = Engine([d]).process([pt("a", i, normal(i)) for i in range(WINDOW + 4)])
    assert len(scorer.calls) == 1
    assert scorer.calls[0][1][0] == 5
    assert [v.ts for v in outcome.verdicts] == [T0 + 60.0 * i for i in range(WINDOW - 1, WINDOW + 4)]


def test_no_scorer_call_when_nothing_is_ready():
    d, scorer = detector()
    outcome = Engine([d]).process([pt("a", i, 0.0) for i in range(WINDOW - 1)])
    assert scorer.calls == []
    assert outcome.verdicts == [] and outcome.alerts == []
    assert outcome.scoring_seconds == {}


def test_scoring_seconds_per_detector():
    d, _ = detector(name="cpu")
    outcome = Engine([d]).process([pt("a", i, 0.0) for i in range(WINDOW)])
    assert set(outcome.scoring_seconds) == {"cpu"}
    assert 0.0 <= outcome.scoring_seconds["cpu"] < 5.0


def test_routing_to_the_first_matching_detector_by_glob():
    web, web_scorer = detector(name="web", series="web-*/cpu")
    catch_all, catch_scorer = detector(name="cpu", series="*/cpu")
    engine = Engine([web, catch_all])
    points = [
        pt(s, i, normal(i)) for i in range(WINDOW) for s in ("web-01/cpu", "web-02/cpu", "db-01/cpu", "web-01/mem")
    ]
    outcome = engine.process(points)
    assert sorted(web_scorer.calls[0][0]) == ["web-01/cpu", "web-02/cpu"]
    assert catch_scorer.calls[0][0] == ["db-01/cpu"]
    assert {(v.detector, v.series) for v in outcome.verdicts} == {
        ("web", "web-01/cpu"),
        ("web", "web-02/cpu"),
        ("cpu", "db-01/cpu"),
    }
    assert engine.unmatched == WINDOW  # every point of web-01/mem
    assert engine.series_tracked() == 3
    assert set(outcome.scoring_seconds) == {"web", "cpu"}


def test_a_first_detector_that_takes_every_series_owns_them_without_caching_routes():
    """The shipped case (`*`, no labels): every series is the first detector's, so no route is looked up
    or kept; a detector that asks for labels or an entity, or comes second, is routed as before."""
    everything, _ = detector(name="all", series="*")
    web, _ = detector(name="web", series="web-*")
    engine = Engine([everything, web])
    assert [engine.owner(s, labels) for s, labels in [("web-01/cpu", {}), ("", {}), ("db", {"dc": "eu1"})]] == [
        everything
    ] * 3
    assert not engine._routes
    labelled = Detector(replace(settings("eu", "*"), labels=(("dc", "eu1"),)), FakeScorer())
    for first in (web, labelled):
        routed = Engine([first, everything])
        assert routed.owner("db", {"dc": "eu1"}) is (labelled if first is labelled else everything)
        assert routed.owner("web-01/cpu") is (web if first is web else everything)
        assert routed._routes


def test_glob_is_case_sensitive_and_whole_id():
    d, _ = detector(series="web-*")
    assert d.matches("web-01/cpu")
    assert not d.matches("WEB-01/cpu")
    assert not d.matches("old-web-01")


def test_incompatible_window_raises_model_error_naming_both():
    with pytest.raises(ModelError) as info:
        Detector(settings(window=32), FakeScorer(window=16))
    message = str(info.value)
    assert "16" in message and "32" in message and "fake-1" in message and "default" in message


def test_incompatible_features_raise_model_error_naming_both():
    with pytest.raises(ModelError) as info:
        Detector(settings(features=("cpu", "mem")), FakeScorer(features=("cpu", "rps")))
    message = str(info.value)
    assert "'cpu', 'mem'" in message and "'cpu', 'rps'" in message


def test_feature_order_matters_for_compatibility():
    with pytest.raises(ModelError):
        Detector(settings(features=("cpu", "mem")), FakeScorer(features=("mem", "cpu")))


def test_dropped_sums_reasons_over_detectors():
    a, _ = detector(name="a", series="a*", max_series=1)
    b, _ = detector(name="b", series="b*", features=("cpu", "mem"))
    engine = Engine([a, b])
    engine.process(
        [
            pt("a1", 1, 0.0),
            pt("a1", 1, 0.0),  # duplicate
            pt("a1", 0, 0.0),  # late
            pt("a2", 5, 0.0),  # evicts a1
            pt("b1", 1, {"cpu": 1.0, "mem": 1.0}),
            pt("b1", 0, {"cpu": 1.0, "mem": 1.0}),  # late
            pt("b1", 2, {"cpu": 1.0}),  # missing mem
            pt("zz", 0, 0.0),  # unmatched, not a drop
        ]
    )
    assert engine.dropped() == {"duplicate": 1, "late": 2, "evicted_series": 1, "missing_feature": 1}
    assert engine.unmatched == 1


def test_evicted_series_forgets_its_threshold_and_alert_state():
    d, _ = detector(
        max_series=1,
        threshold=ThresholdSettings(warmup=0, history=256, k=4.0, smoothing=1),
        alerting=AlertSettings(for_windows=1, resolve_after=1),
    )
    engine = Engine([d])
    spike = [pt("a", i, 5.0 if i == WINDOW else normal(i)) for i in range(WINDOW + 1)]
    alerts = engine.process(spike).alerts
    assert [x.status for x in alerts] == ["firing"]
    assert len(d.alerts.firing()) == 1
    engine.process([pt("b", 0, 0.0)])
    assert d.alerts.firing() == []
    assert len(d.windows) == 1


def test_multivariate_top_features_name_the_anomalous_feature_first():
    features = ("cpu", "mem", "rps")
    d, scorer = detector(features=features, alerting=AlertSettings(for_windows=1, resolve_after=2))
    rng = np.random.default_rng(3)

    def values(i: int, mem_fault: bool) -> dict[str, float]:
        base = {f: float(rng.normal(0.0, 0.05)) for f in features}
        if mem_fault:
            base["mem"] = 3.0
        return base

    engine = Engine([d])
    outcome = engine.process([pt("web-01", i, values(i, i >= 30)) for i in range(34)])
    [firing] = outcome.alerts
    assert firing.top_features[0][0] == "mem"
    assert firing.top_features[0][1] > 0.9
    shares = [s for _, s in firing.top_features]
    assert shares == sorted(shares, reverse=True)
    verdict = next(v for v in outcome.verdicts if v.anomalous)
    assert set(verdict.feature_shares) == set(features)
    assert sum(verdict.feature_shares.values()) == pytest.approx(1.0)
    assert scorer.calls[0][1][2] == 3


def test_multivariate_columns_reach_the_scorer_in_feature_order():
    features = ("cpu", "mem")
    d, _ = detector(features=features)
    seen: list[np.ndarray] = []
    original = d.scorer.score

    def spy(series, batch, start, end):
        seen.append(batch.copy())
        return original(series, batch, start, end)

    d.scorer.score = spy  # type: ignore[method-assign]
    Engine([d]).process([pt("h", i, {"mem": 2.0, "cpu": 1.0}) for i in range(WINDOW)])
    np.testing.assert_array_equal(seen[0][0], np.tile([1.0, 2.0], (WINDOW, 1)))


def test_core_imports_no_torch_kafka_or_prometheus():
    code = (
        "import sys\n"
        "import monitor.config, monitor.formats.native, monitor.engine.detector, monitor.records\n"
        "import monitor.engine.windows\n"
        "import monitor.engine.threshold, monitor.engine.alerting, monitor.engine.scoring, monitor.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'kafka', 'prometheus_client'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("adapt_after", [0, 40])
def test_a_lasting_level_shift_becomes_normal_only_with_adapt_after(adapt_after):
    threshold = ThresholdSettings(warmup=2, history=64, k=4.0, smoothing=1, adapt_after=adapt_after)
    d = Detector(settings(stride=1, threshold=threshold), FakeScorer())
    stream = [pt("web-01/cpu", i, normal(i) + (3.0 if i >= 60 else 0.0)) for i in range(400)]
    alerts = Engine([d]).process(stream).alerts
    assert [a.status for a in alerts][:1] == ["firing"]
    if adapt_after:
        assert [a.status for a in alerts] == ["firing", "resolved"], "the new level is learned, the alert resolves"
    else:
        assert [a.status for a in alerts] == ["firing"], "without adapting, the shifted series stays anomalous"


class Scaled(FakeScorer):
    """FakeScorer's scores, and its validation scores, times `factor`: a model in other units."""

    def __init__(self, factor: float) -> None:
        super().__init__(baseline=factor * np.linspace(0.005, 0.015, 64))
        self.factor = factor

    def score(self, series: Sequence[str], batch: np.ndarray, start=None, end=None) -> Scores:
        result = super().score(series, batch, start, end)
        return Scores(result.scores * self.factor, result.feature_errors * self.factor)


@pytest.mark.parametrize("factor", [10.0, 0.1])
def test_a_model_in_other_units_takes_over_without_paging_or_going_blind(factor):
    """A retrained model that scores healthy windows 10 times higher must not page every series (0.1 times:
    must still see an incident) in the `history` windows its scores take to replace the old ones."""
    values = np.random.default_rng(3).normal(0.0, 0.1, 600)
    values[500:504] = 0.4
    d, _ = detector()
    engine = Engine([d])
    before = engine.process([pt("web-01/cpu", i, v) for i, v in enumerate(values[:300])]).alerts
    d.swap_scorer(Scaled(factor))
    after = engine.process([pt("web-01/cpu", i, values[i]) for i in range(300, 600)]).alerts
    fired = [(a.window_end - T0) / 60.0 for a in [*before, *after] if a.status == "firing"]
    assert len(fired) == 1 and 500 <= fired[0] < 504, f"one alert, on the incident: {fired}"


def test_after_a_swap_new_series_start_from_the_new_models_scores_and_old_ones_keep_theirs_in_its_units():
    """The new model's validation scores are 1000 times the old one's (mean 10 against 0.01)."""
    d, _ = detector()
    kept, _ = detector()
    for bank in (d.thresholds, kept.thresholds):
        for score in (0.004, 0.02, 0.012):
            bank.judge("old-series", score)
    d.swap_scorer(FakeScorer(baseline=np.linspace(5.0, 15.0, 64)))
    old, new = d.thresholds.judge("old-series", 10.0), d.thresholds.judge("new-series", 0.01)
    assert new.threshold > 15.0, "a new series starts from the new model's scores"
    before = kept.thresholds.judge("old-series", 0.01).threshold
    assert old.threshold == pytest.approx(1000 * before), "a series seen before keeps its statistics, in new units"
