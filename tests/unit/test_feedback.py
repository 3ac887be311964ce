"""Verdicts on alerts in the engine: dismissal, learning from it, confirmation, replays, precision, state;
and the feedback message's decoding."""

from __future__ import annotations

import pytest

from monitor.engine.detector import Detector, Engine
from monitor.formats.feedback import decode_feedback
from monitor.records import Alert, Feedback, Rejected, encode_feedback

from .test_detector import detector, normal, pt

SERIES = "web-01/cpu"


def run(engine: Engine, first: int, last: int, spike: range = range(0)) -> list[Alert]:
    alerts = []
    for i in range(first, last):
        alerts += engine.process([pt(SERIES, i, 3.0 if i in spike else normal(i))]).alerts
    return alerts


def fired(first: int = 0, last: int = 44) -> tuple[Detector, Engine, Alert]:
    """A detector whose series has a level shift from step 40 on, and the alert it fired."""
    d, _ = detector()
    engine = Engine([d])
    alerts = run(engine, first, last, range(40, 1000))
    assert [a.status for a in alerts] == ["firing"]
    return d, engine, alerts[0]


def test_a_false_positive_dismisses_the_open_alert_and_its_run_stays_quiet():
    d, engine, firing = fired()
    new, dismissed = d.judge(Feedback(firing.alert_id, "false_positive", SERIES, by="alice"), at=1.0)
    assert new and dismissed is not None
    assert (dismissed.status, dismissed.resolution, dismissed.resolved_by) == ("resolved", "dismissed", "alice")
    assert dismissed.alert_id == firing.alert_id and dismissed.at == dismissed.ended_at == firing.at + 120.0
    assert d.alerts.firing() == []
    assert run(engine, 44, 70, range(40, 1000)) == [], "the dismissed run is normal until it ends"


def test_a_dismissed_pattern_raises_the_threshold_and_does_not_fire_again():
    d, engine, firing = fired()
    before = d.thresholds.judge_many([SERIES], [0.0]).threshold[0]
    d.judge(Feedback(firing.alert_id, "false_positive", SERIES), at=1.0)
    run(engine, 44, 60, range(40, 48))  # back to normal
    assert d.thresholds.snapshot(SERIES)["accepting"] is False
    assert d.thresholds.judge_many([SERIES], [0.0]).threshold[0] > 10 * before
    assert run(engine, 60, 80, range(64, 68)) == [], "the same pattern again"


def test_a_true_positive_is_counted_and_changes_nothing_else():
    d, engine, firing = fired()
    assert d.judge(Feedback(firing.alert_id, "true_positive", SERIES), at=1.0) == (True, None)
    assert [a.alert_id for a in d.alerts.firing()] == [firing.alert_id]
    assert d.feedback.precision() == 1.0
    assert [a.status for a in run(engine, 44, 90, range(40, 48))] == ["resolved"]
    assert "firing" in [a.status for a in run(engine, 90, 110, range(94, 98))], "the pattern still alerts"


def test_a_replayed_verdict_is_not_counted_twice_and_a_changed_one_replaces_it():
    d, _, firing = fired()
    fb = Feedback(firing.alert_id, "true_positive", SERIES)
    assert d.judge(fb, at=1.0) == (True, None)
    assert d.judge(fb, at=2.0) == (False, None)
    assert d.judge(Feedback("other", "false_positive", SERIES), at=3.0) == (True, None)  # not open: counted only
    assert d.feedback.precision() == 0.5
    assert d.judge(Feedback("other", "true_positive", SERIES), at=4.0)[0]
    assert d.feedback.precision() == 1.0


def test_precision_covers_the_last_verdicts_only():
    d, _ = detector()
    d.feedback.last = 2
    for n, verdict in enumerate(["false_positive", "true_positive", "true_positive"]):
        d.judge(Feedback(f"a{n}", verdict, f"s{n}"), at=float(n))
    assert d.feedback.precision() == 1.0


def test_verdicts_and_the_dismissal_survive_a_snapshot():
    d, _, firing = fired()
    d.judge(Feedback(firing.alert_id, "false_positive", SERIES, by="bob"), at=1.0)
    state = d.snapshot(SERIES)
    other, _ = detector()
    other.restore(SERIES, state)
    assert other.judge(Feedback(firing.alert_id, "false_positive", SERIES), at=2.0) == (False, None)
    assert other.feedback.precision() == 0.0
    assert other.thresholds.snapshot(SERIES)["accepting"] is True
    assert run(Engine([other]), 44, 60, range(40, 1000)) == []


def test_feedback_decodes_and_encodes():
    fb = Feedback("ae39a74cbb0997084dde1122", "false_positive", SERIES, by="alice", note="batch job")
    assert decode_feedback(encode_feedback(fb), SERIES.encode(), 1024) == fb


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"\xff", b"s", "invalid_utf8"),
        (b"{", b"s", "invalid_json"),
        (b"[]", b"s", "not_an_object"),
        (b'{"alert_id": "a", "verdict": "false_positive"}', None, "missing_field"),
        (b'{"verdict": "false_positive"}', b"s", "missing_field"),
        (b'{"alert_id": "a", "verdict": "maybe"}', b"s", "wrong_type"),
        (b'{"alert_id": 5, "verdict": "true_positive"}', b"s", "wrong_type"),
        (None, b"s", "missing_field"),
        (b'{"alert_id": "a", "verdict": "true_positive", "note": "' + b"x" * 100 + b'"}', b"s", "oversize"),
    ],
)
def test_bad_feedback_is_rejected_with_the_metrics_reasons(value, key, reason):
    rejected = decode_feedback(value, key, 64)
    assert isinstance(rejected, Rejected) and rejected.reason == reason, rejected
