"""monitor.engine.alerting.AlertTracker: pending → firing → resolved, ids, severity, warm-up, top features."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.engine.alerting import AlertSettings, AlertTracker
from monitor.engine.verdicts import VerdictBatch
from monitor.records import Verdict, alert_id

T0 = 1795723200.0
STEP = 60.0


def verdict(
    i: int,
    anomalous: bool,
    series: str = "web-01/cpu",
    score: float | None = None,
    threshold: float = 1.0,
    warming_up: bool = False,
    shares: dict[str, float] | None = None,
) -> Verdict:
    return Verdict(
        detector="default",
        series=series,
        ts=T0 + i * STEP,
        window_start=T0 + i * STEP - 31 * STEP,
        score=(1.5 if anomalous else 0.5) if score is None else score,
        threshold=threshold,
        anomalous=anomalous,
        warming_up=warming_up,
        labels={"host": "web-01"},
        feature_shares=shares if shares is not None else {"value": 1.0},
    )


def tracker(
    for_windows: int = 3, resolve_after: int = 2, critical_ratio: float = 2.0, cooldown: int = 0
) -> AlertTracker:
    """Without `confirm_after` (the tests of it build their own tracker)."""
    settings = AlertSettings(for_windows, resolve_after, critical_ratio, cooldown=cooldown, confirm_after=1)
    return AlertTracker("default", settings)


def run(t: AlertTracker, pattern: str, series: str = "web-01/cpu", start: int = 0):
    """`pattern`: A anomalous, n normal, w warming up (normal); returns what each verdict produced."""
    out = []
    for i, c in enumerate(pattern, start):
        out.append(t.observe(verdict(i, c == "A", series, warming_up=c == "w"), "fake-1"))
    return out


def test_fires_after_for_windows_consecutive_anomalous_verdicts_not_before():
    t = tracker(for_windows=3)
    out = run(t, "AAA")
    assert out[:2] == [None, None]
    alert = out[2]
    assert alert is not None and alert.status == "firing"
    assert alert.started_at == T0  # the first anomalous window, not the one that fired
    assert alert.at == T0 + 2 * STEP
    assert alert.ended_at is None
    assert alert.window_end == T0 + 2 * STEP
    assert alert.window_start == T0 + 2 * STEP - 31 * STEP
    assert alert.series == "web-01/cpu" and alert.detector == "default"
    assert alert.model_version == "fake-1"
    assert dict(alert.labels) == {"host": "web-01"}
    assert alert.score == 1.5 and alert.threshold == 1.0


def test_for_one_fires_on_the_first_anomalous_verdict():
    [alert] = run(tracker(for_windows=1), "A")
    assert alert is not None and alert.started_at == T0


def test_normal_verdict_in_between_resets_the_count():
    t = tracker(for_windows=3)
    out = run(t, "AAnAA")
    assert out == [None] * 5
    [alert] = run(t, "A", start=5)
    assert alert is not None
    assert alert.started_at == T0 + 3 * STEP  # the start of the run that fired


def test_only_one_firing_event_while_anomalous():
    out = run(tracker(for_windows=2), "AAAAAAAA")
    assert [a.status for a in out if a is not None] == ["firing"]


def test_resolves_after_resolve_after_consecutive_normal_verdicts():
    t = tracker(for_windows=2, resolve_after=3)
    firing = run(t, "AA")[1]
    out = run(t, "nnAnnn", start=2)
    assert out[:5] == [None] * 5  # the anomalous one in between reset the count
    resolved = out[5]
    assert resolved is not None and resolved.status == "resolved"
    assert resolved.alert_id == firing.alert_id
    assert resolved.started_at == firing.started_at
    assert resolved.ended_at == T0 + 7 * STEP
    assert resolved.at == T0 + 7 * STEP
    assert resolved.window_end == T0 + 7 * STEP
    assert resolved.score == 0.5
    assert run(t, "nnnn", start=8) == [None] * 4  # resolved once


def test_firing_lists_open_alerts():
    t = tracker(for_windows=1, resolve_after=1)
    run(t, "A", series="a")
    run(t, "A", series="b")
    run(t, "n", series="c")
    assert sorted(a.series for a in t.firing()) == ["a", "b"]
    assert all(a.status == "firing" for a in t.firing())
    run(t, "n", series="a", start=1)
    assert [a.series for a in t.firing()] == ["b"]


def test_a_new_episode_gets_a_new_id():
    t = tracker(for_windows=1, resolve_after=1)
    first = run(t, "An")
    second = run(t, "An", start=10)
    assert first[0].alert_id == first[1].alert_id
    assert second[0].alert_id == second[1].alert_id
    assert first[0].alert_id != second[0].alert_id
    assert second[0].started_at == T0 + 10 * STEP


def test_alert_id_is_deterministic():
    a = run(tracker(), "AAA")[2]
    b = run(tracker(), "AAA")[2]
    assert a.alert_id == b.alert_id
    assert a.alert_id == alert_id("default", "web-01/cpu", T0)
    other_series = run(tracker(), "AAA", series="web-02/cpu")[2]
    assert other_series.alert_id != a.alert_id
    other_start = run(tracker(), "AAA", start=1)[2]
    assert other_start.alert_id != a.alert_id
    assert alert_id("other", "web-01/cpu", T0) != a.alert_id


@pytest.mark.parametrize(
    ("score", "threshold", "severity"),
    [
        (2.0, 1.0, "critical"),
        (5.0, 1.0, "critical"),
        (1.99, 1.0, "warning"),
        (1.01, 1.0, "warning"),
        (0.1, 0.0, "critical"),
    ],
)
def test_severity_by_score_over_threshold(score, threshold, severity):
    t = tracker(for_windows=1, critical_ratio=2.0)
    alert = t.observe(verdict(0, True, score=score, threshold=threshold), "fake-1")
    assert alert.severity == severity


def test_warming_up_verdicts_are_ignored():
    t = tracker(for_windows=2, resolve_after=1)
    # A warming-up verdict between two anomalous ones neither counts nor breaks the run.
    out = [
        t.observe(verdict(0, True), "v"),
        t.observe(verdict(1, True, warming_up=True), "v"),
        t.observe(verdict(2, False, warming_up=True), "v"),
    ]
    assert out == [None, None, None]
    alert = t.observe(verdict(3, True), "v")
    assert alert is not None and alert.started_at == T0
    # ...and warming-up normal verdicts do not resolve.
    assert t.observe(verdict(4, False, warming_up=True), "v") is None
    assert len(t.firing()) == 1


def test_top_features_ordered_by_share_at_most_three():
    t = tracker(for_windows=1)
    shares = {"cpu": 0.1, "mem": 0.5, "rps": 0.3, "disk": 0.05, "net": 0.05}
    alert = t.observe(verdict(0, True, shares=shares), "v")
    assert alert.top_features == (("mem", 0.5), ("rps", 0.3), ("cpu", 0.1))


def test_forget_drops_series_state():
    t = tracker(for_windows=2)
    run(t, "AA")
    assert len(t.firing()) == 1
    t.forget("web-01/cpu")
    assert t.firing() == []
    assert run(t, "A", start=5) == [None]  # the count starts again


def test_within_the_cooldown_only_a_critical_score_fires_again():
    t = tracker(for_windows=1, resolve_after=1, cooldown=5)
    assert [a.status for a in run(t, "An")] == ["firing", "resolved"]  # resolved at window 1
    warnings = [t.observe(verdict(i, True, score=1.5), "fake-1") for i in range(2, 6)]
    assert warnings == [None] * 4  # 1 to 4 windows after the resolve: the same incident, no second page
    critical = t.observe(verdict(6, True, score=2.5), "fake-1")
    assert critical is not None and critical.status == "firing" and critical.severity == "critical"
    assert critical.started_at == T0 + 2 * STEP  # the anomalous run's first window


def test_after_the_cooldown_a_warning_fires_again():
    t = tracker(for_windows=1, resolve_after=1, cooldown=3)
    run(t, "An")
    out = run(t, "nnA", start=2)  # windows 2 and 3 normal, window 4 is the 3rd after the resolve
    assert out == [None, None, None]
    fired = t.observe(verdict(5, True, score=1.5), "fake-1")
    assert fired is not None and fired.status == "firing" and fired.severity == "warning"


def test_the_cooldown_survives_a_restore():
    t = tracker(for_windows=1, resolve_after=1, cooldown=5)
    run(t, "An")
    restored = tracker(for_windows=1, resolve_after=1, cooldown=5)
    restored.restore("web-01/cpu", t.snapshot("web-01/cpu"))
    assert restored.observe(verdict(2, True, score=1.5), "fake-1") is None
    fresh = tracker(for_windows=1, resolve_after=1, cooldown=5)
    assert fresh.observe(verdict(2, True, score=1.5), "fake-1") is not None  # no alert before: no cooldown


def test_the_verdicts_say_which_windows_are_in_the_cooldown():
    """`Verdict.cooling`, which `monitor evaluate` squashes against the critical bar: the windows after a
    resolve, up to `cooldown` of them; none before the series' first alert."""
    t = tracker(for_windows=1, resolve_after=1, cooldown=3)
    batches = [VerdictBatch.of([verdict(i, i == 0)], ("value",)) for i in range(6)]
    for batch in batches:
        t.observe_many(batch, np.array([0]), "fake-1")
    assert [bool(b.cooling[0]) for b in batches] == [False, False, True, True, True, False]


def grazing(i: int, ratio: float) -> Verdict:
    """An anomalous verdict at `ratio` x its threshold."""
    return verdict(i, True, score=ratio)


def test_a_run_that_grazes_its_threshold_fires_once_it_has_lasted_confirm_after_windows():
    t = AlertTracker("default", AlertSettings(for_windows=1, confirm_after=4, confirm_ratio=1.1))
    out = [t.observe(grazing(i, 1.05), "fake-1") for i in range(4)]
    assert out[:3] == [None] * 3, "under confirm_ratio x the threshold: not yet"
    assert out[3] is not None and out[3].status == "firing" and out[3].severity == "warning"
    assert out[3].started_at == T0 and out[3].at == T0 + 3 * STEP, "the run's first window, fired at the 4th"


def test_a_graze_shorter_than_confirm_after_pages_no_one():
    t = AlertTracker("default", AlertSettings(for_windows=1, confirm_after=4, confirm_ratio=1.1))
    assert [t.observe(grazing(i, 1.05), "fake-1") for i in range(3)] == [None] * 3
    assert run(t, "nnnn", start=3) == [None] * 4
    assert t.firing() == []


def test_a_run_that_reaches_confirm_ratio_fires_without_waiting():
    t = AlertTracker("default", AlertSettings(for_windows=1, confirm_after=4, confirm_ratio=1.1))
    assert t.observe(grazing(0, 1.05), "fake-1") is None
    fired = t.observe(grazing(1, 1.1), "fake-1")
    assert fired is not None and fired.started_at == T0, "its run started at the graze before it"


def test_the_confirmation_count_survives_a_restore():
    settings = AlertSettings(for_windows=1, confirm_after=4, confirm_ratio=1.1)
    t = AlertTracker("default", settings)
    for i in range(3):
        t.observe(grazing(i, 1.05), "fake-1")
    restored = AlertTracker("default", settings)
    restored.restore("web-01/cpu", t.snapshot("web-01/cpu"))
    fired = restored.observe(grazing(3, 1.05), "fake-1")
    assert fired is not None and fired.started_at == T0
