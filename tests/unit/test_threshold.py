"""monitor.engine.threshold.ThresholdBank: mean + k·sd of recent normal scores, seeded, warmed up, floored, bounded."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.engine.threshold import ThresholdBank, ThresholdSettings

BASELINE = np.array([0.8, 1.0, 1.1, 0.9, 1.3, 0.7, 1.2, 1.0, 0.95, 1.05])


def expected(values, k: float) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.mean() + k * values.std())


def bank(
    warmup: int = 0,
    history: int = 64,
    k: float = 3.0,
    minimum: float = 0.0,
    baseline=BASELINE,
    smoothing=1,
    learn_within: float = 0.0,
):
    settings = ThresholdSettings(
        warmup=warmup, history=history, k=k, minimum=minimum, smoothing=smoothing, learn_within=learn_within
    )
    return ThresholdBank(settings, baseline)


def test_initial_threshold_is_mean_plus_k_sd_of_the_baseline():
    j = bank(k=3.0).judge("a", 1.0)
    assert j.threshold == pytest.approx(expected(BASELINE, 3.0), rel=1e-12)
    assert not j.anomalous and not j.warming_up


@pytest.mark.parametrize("k", [0.0, 1.5, 4.0])
def test_k_scales_the_deviation(k):
    assert bank(k=k).judge("a", 0.0).threshold == pytest.approx(expected(BASELINE, k), rel=1e-12)


def test_every_series_starts_from_the_same_baseline():
    b = bank()
    for score in (1.0, 1.1, 0.9):
        b.judge("a", score)
    assert b.judge("b", 1.0).threshold == pytest.approx(expected(BASELINE, 3.0), rel=1e-12)


def test_long_baseline_is_thinned_to_history_keeping_its_distribution():
    baseline = np.arange(1000, dtype=float)
    j = bank(history=100, k=2.0, baseline=baseline).judge("a", 0.0)
    assert j.threshold == pytest.approx(expected(baseline, 2.0), rel=0.02)


def test_score_above_threshold_is_anomalous_and_at_it_is_not():
    limit = bank(k=3.0).judge("probe", 0.0).threshold
    assert limit == pytest.approx(expected(BASELINE, 3.0), rel=1e-12)
    assert bank(k=3.0).judge("a", limit * 1.001).anomalous
    assert not bank(k=3.0).judge("a", limit).anomalous
    assert not bank(k=3.0).judge("a", limit * 0.999).anomalous


def test_warm_up_windows_are_never_anomalous():
    b = bank(warmup=3)
    judgements = [b.judge("a", 1e6) for _ in range(3)]
    assert all(j.warming_up and not j.anomalous for j in judgements)
    after = b.judge("a", 1e12)
    assert not after.warming_up
    assert after.anomalous


def test_warm_up_scores_are_learned():
    b = bank(warmup=2)
    b.judge("a", 5.0)
    b.judge("a", 6.0)
    j = b.judge("a", 0.0)
    assert j.threshold == pytest.approx(expected([*BASELINE, 5.0, 6.0], 3.0), rel=1e-12)


def test_anomalous_score_is_kept_out_of_the_statistics():
    b = bank()
    before = b.judge("a", 1.0).threshold
    spike = b.judge("a", 1000.0)
    assert spike.anomalous
    assert spike.threshold == pytest.approx(expected([*BASELINE, 1.0], 3.0), rel=1e-12)
    assert b.judge("a", 1.0).threshold == pytest.approx(spike.threshold, rel=1e-12)
    assert spike.threshold != before  # the normal score before the spike was learned


def test_normal_score_is_added_to_the_statistics():
    b = bank()
    b.judge("a", 1.4)
    assert b.judge("a", 1.0).threshold == pytest.approx(expected([*BASELINE, 1.4], 3.0), rel=1e-12)


def test_long_incident_does_not_raise_its_own_threshold():
    b = bank()
    first = b.judge("a", 50.0)
    verdicts = [b.judge("a", 50.0) for _ in range(500)]
    assert all(v.anomalous for v in verdicts)
    assert verdicts[-1].threshold == pytest.approx(first.threshold, rel=1e-12)


def test_minimum_floors_the_threshold():
    b = bank(minimum=1.0, baseline=np.zeros(20))
    j = b.judge("a", 0.5)
    assert j.threshold == 1.0 and not j.anomalous
    assert b.judge("a", 1.5).anomalous


def test_minimum_below_the_statistics_changes_nothing():
    j = bank(minimum=0.01).judge("a", 1.0)
    assert j.threshold == pytest.approx(expected(BASELINE, 3.0), rel=1e-12)


def test_statistics_follow_only_the_last_history_scores():
    rng = np.random.default_rng(7)
    scores = rng.gamma(2.0, 0.5, size=3000)
    b = bank(warmup=10**9, history=32, k=3.0)  # warming up forever: every score is learned
    for score in scores:
        b.judge("a", float(score))
    j = b.judge("a", 0.0)
    assert j.threshold == pytest.approx(expected(scores[-32:], 3.0), rel=1e-9)


def test_history_also_bounds_the_seed():
    baseline = np.arange(10, dtype=float)
    b = bank(warmup=10**9, history=10, k=1.0, baseline=baseline)
    for score in (100.0, 101.0, 102.0):
        b.judge("a", score)
    assert b.judge("a", 0.0).threshold == pytest.approx(expected([*baseline[3:], 100.0, 101.0, 102.0], 1.0))


def test_forget_restarts_the_series_from_the_baseline():
    b = bank(warmup=2)
    for score in (3.0, 4.0, 5.0):
        b.judge("a", score)
    b.forget("a")
    j = b.judge("a", 1.0)
    assert j.warming_up
    assert j.threshold == pytest.approx(expected(BASELINE, 3.0), rel=1e-12)
    b.forget("never-seen")  # no error


def test_empty_baseline_starts_at_the_floor():
    j = bank(minimum=0.25, baseline=np.array([])).judge("a", 0.1)
    assert j.threshold == 0.25
    assert not j.anomalous


def test_smoothing_judges_the_mean_of_the_last_scores():
    b = bank(k=3.0, smoothing=4)
    judged = [b.judge("a", s) for s in (1.0, 1.0, 1.0, 5.0)]
    assert [j.score for j in judged] == [1.0, 1.0, 1.0, 2.0]
    assert judged[-1].anomalous, "the mean 2.0 is above the threshold although one score 5.0 would be too"
    assert b.judge("a", 1.0).score == pytest.approx(2.0)  # (1 + 1 + 5 + 1) / 4


def test_smoothing_seeds_with_smoothed_baseline_scores():
    baseline = np.array([0.0, 2.0] * 8)  # alternating: smoothed over 2, every value is 1.0
    j = bank(k=3.0, smoothing=2, baseline=baseline).judge("a", 1.0)
    assert j.threshold == pytest.approx(1.0)


def test_a_restored_series_keeps_its_recent_scores():
    original = bank(k=3.0, smoothing=3)
    for s in (1.0, 2.0, 4.0):
        original.judge("a", s)
    copy = bank(k=3.0, smoothing=3)
    copy.restore("a", original.snapshot("a"))
    assert copy.judge("a", 6.0) == original.judge("a", 6.0)
    legacy = {k: v for k, v in original.snapshot("a").items() if k != "recent"}
    old = bank(k=3.0, smoothing=3)
    old.restore("a", legacy)  # a checkpoint written before smoothing existed
    assert old.judge("a", 6.0).score == 6.0


def test_statistics_learned_under_another_model_are_restored_in_the_serving_models_units():
    """A restart with a retrained model whose healthy scores spread ten times as far as the previous
    model's (its validation scores are ten times theirs): the series keeps its threshold, ten times larger."""
    rng = np.random.default_rng(2)
    scores = rng.gamma(2.0, 0.5, size=60)
    old = bank(k=3.0, smoothing=3)
    for score in scores:
        old.judge("a", float(score))
    new = bank(k=3.0, smoothing=3, baseline=10 * BASELINE)
    assert new.restore("a", old.snapshot("a"))
    moved, kept = new.judge("a", 10 * scores[0]), old.judge("a", float(scores[0]))
    assert moved.threshold == pytest.approx(10 * kept.threshold, rel=1e-12)
    assert moved.score == pytest.approx(10 * kept.score, rel=1e-12), "its recent scores too"
    legacy = {k: v for k, v in old.snapshot("a").items() if k != "scale"}  # written before the scale was kept
    unknown = bank(k=3.0, smoothing=3, baseline=10 * BASELINE)
    assert unknown.restore("a", legacy)
    assert unknown.judge("a", 1.0).threshold == pytest.approx(old.judge("a", 1.0).threshold, rel=1e-12)


def test_a_batch_of_series_is_judged_as_one_at_a_time():
    rng = np.random.default_rng(5)
    one, many = bank(warmup=2, smoothing=3), bank(warmup=2, smoothing=3)
    names = ["a", "b", "c", "d"]
    for _ in range(40):
        scores = rng.gamma(2.0, 0.5, size=len(names)) * rng.choice([1.0, 8.0], p=[0.9, 0.1])
        batch = many.judge_many(names, scores)
        single = [one.judge(name, float(score)) for name, score in zip(names, scores, strict=True)]
        assert batch.anomalous.tolist() == [j.anomalous for j in single]
        np.testing.assert_allclose(batch.threshold, [j.threshold for j in single], rtol=1e-12)
        np.testing.assert_allclose(batch.score, [j.score for j in single], rtol=1e-12)


def test_a_long_history_is_kept_in_blocks_and_drops_its_oldest_block_whole():
    """history 2000 in 16 blocks of 125: the statistics cover the last 1876 to 2000 normal scores."""
    rng = np.random.default_rng(11)
    scores = rng.gamma(2.0, 0.5, size=5000)
    b = bank(warmup=10**9, history=2000, k=3.0, baseline=np.array([]))
    for score in scores[:4000]:
        b.judge("a", float(score))
    assert b.judge("a", 0.0).threshold == pytest.approx(expected(scores[2000:4000], 3.0), rel=1e-9)
    b.judge("a", 0.0)  # 4002 scores learned: the oldest block went, the newest holds 2
    assert b.judge("a", 0.0).threshold == pytest.approx(expected([*scores[2125:4000], 0.0, 0.0], 3.0), rel=1e-9)


def test_a_checkpoint_that_kept_the_scores_themselves_is_restored_into_blocks():
    values = np.linspace(1.0, 2.0, 50)
    legacy = {"judged": 60, "values": values, "total": values.sum(), "total_sq": (values**2).sum(), "recent": [1.5]}
    b = bank(k=3.0)
    assert b.restore("a", legacy)
    assert b.judge("a", 1.5).threshold == pytest.approx(expected(values, 3.0), rel=1e-9)


def test_statistics_in_blocks_of_another_size_are_not_restored():
    source = bank(history=64)
    source.judge("a", 1.0)
    target = bank(history=2000, warmup=5)
    assert not target.restore("a", source.snapshot("a"))
    assert target.judge("a", 1.0).warming_up, "the series starts over"


@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_the_count_of_series_past_warm_up_follows_judging_forgetting_and_restoring(warmup):
    b = bank(warmup=warmup)
    for _ in range(2):
        b.judge_many(["a", "b", "c"], np.array([1.0, 1.0, 1.0]))
    b.judge("a", 1.0)
    ready = lambda: sum(int(b.snapshot(s)["judged"] >= warmup) for s in "abc" if b.snapshot(s))  # noqa: E731
    assert b.judged_enough() == ready()
    b.forget("b")
    assert b.judged_enough() == ready()
    b.restore("b", b.snapshot("a"))
    b.restore("b", b.snapshot("a"))
    assert b.judged_enough() == ready()


def test_a_provisional_score_is_neither_judged_nor_learned_nor_counted_towards_the_warm_up() -> None:
    """Scores of a series whose normalisation is still being learned are in no fixed units (issue 18)."""
    bank = ThresholdBank(ThresholdSettings(warmup=2, history=64, k=3.0, smoothing=1), np.linspace(0.9, 1.1, 64))
    fresh = ThresholdBank(bank.settings, np.linspace(0.9, 1.1, 64))
    fresh.judge("new", 1.0)

    for _ in range(5):
        judged = bank.judge_many(["new"], np.array([50.0]), provisional=np.array([True]))
        assert judged.warming_up[0] and not judged.anomalous[0] and judged.score[0] == 50.0

    assert bank.judged_enough() == 0
    bank.judge("new", 1.0)
    for name in ("judged", "sums", "squares", "counts"):
        np.testing.assert_array_equal(bank.snapshot("new")[name], fresh.snapshot("new")[name], err_msg=name)
    bank.judge("new", 1.0)
    judged = bank.judge("new", 50.0)
    assert not judged.warming_up and judged.anomalous


def run_bank(settle: float = 0.0, hold: float = 1.0) -> ThresholdBank:
    """A bank for the rules that end an anomalous run: `settle` and `hold` (each off unless given)."""
    settings = ThresholdSettings(warmup=0, history=64, k=3.0, smoothing=1, adapt_after=0, settle=settle, hold=hold)
    return ThresholdBank(settings, BASELINE)


def test_after_an_incident_a_level_far_below_its_peak_is_settled_not_anomalous() -> None:
    b = run_bank(settle=0.1)
    limit = b.judge("a", 1.0).threshold
    incident = b.judge("a", 100 * limit)
    assert incident.anomalous
    after = [b.judge("a", 1.5 * limit) for _ in range(5)]
    assert not any(j.anomalous for j in after), "settled at a new level a hundredth of the peak"
    assert after[-1].threshold == incident.threshold, "a settled level is not learned: it cannot hide the next run"
    assert b.judge("a", 20 * limit).anomalous, "a second surge above a tenth of the peak is anomalous again"


def test_without_settle_the_new_level_stays_anomalous() -> None:
    b = run_bank(settle=0.0)
    limit = b.judge("a", 1.0).threshold
    b.judge("a", 100 * limit)
    assert all(b.judge("a", 1.5 * limit).anomalous for _ in range(5))


def test_the_peak_is_forgotten_once_the_level_falls_below_the_threshold() -> None:
    b = run_bank(settle=0.1)
    limit = b.judge("a", 1.0).threshold
    b.judge("a", 100 * limit)
    assert not b.judge("a", 0.5).anomalous
    assert b.judge("a", 1.5 * limit).anomalous, "a new run starts from its own peak"


def test_a_restored_series_keeps_the_peak_of_its_run() -> None:
    b = run_bank(settle=0.1)
    limit = b.judge("a", 1.0).threshold
    b.judge("a", 100 * limit)
    restored = run_bank(settle=0.1)
    restored.restore("a", b.snapshot("a"))
    assert not restored.judge("a", 1.5 * limit).anomalous


def test_a_dip_just_under_the_threshold_does_not_end_the_run() -> None:
    b = run_bank(hold=0.85)
    limit = b.judge("a", 1.0).threshold
    incident = b.judge("a", 1.2 * limit)
    assert incident.anomalous
    dip = b.judge("a", 0.9 * limit)
    assert dip.anomalous, "above 0.85 of the threshold inside a run: still the incident"
    assert b.judge("a", 0.9 * limit).threshold == incident.threshold, "held scores are not learned"
    assert not b.judge("a", 0.8 * limit).anomalous, "below the share the run ends"
    assert not b.judge("a", 0.9 * limit).anomalous, "a new run starts at the threshold itself"


def test_without_hold_a_dip_under_the_threshold_ends_the_run() -> None:
    b = run_bank(hold=1.0)
    limit = b.judge("a", 1.0).threshold
    assert b.judge("a", 1.2 * limit).anomalous
    assert not b.judge("a", 0.9 * limit).anomalous


def creeping(learn_within: float) -> list[float]:
    """Thresholds of a series whose scores creep up under its threshold, one step a window."""
    b = bank(learn_within=learn_within)
    thresholds = []
    for _ in range(40):
        t = b.judge("a", 1.0).threshold
        thresholds.append(b.judge("a", 0.98 * t).threshold)
    return thresholds


def test_scores_creeping_up_under_the_threshold_drag_it_up_without_learn_within() -> None:
    assert creeping(0.0)[-1] > 2 * creeping(0.0)[0]


def test_learn_within_learns_a_high_normal_score_as_at_most_mean_plus_that_many_sd() -> None:
    free, capped = creeping(0.0), creeping(1.5)
    assert capped[-1] < free[-1] / 1.5, "the drift drags the threshold up far less"
    b = bank(learn_within=1.5)
    mean, sd = BASELINE.mean(), BASELINE.std()
    b.judge("a", mean + 2.5 * sd)  # normal (under k = 3), learned as mean + 1.5 sd
    learned = np.append(BASELINE, mean + 1.5 * sd)
    assert b.judge("a", 1.0).threshold == pytest.approx(expected(learned, 3.0), rel=1e-12)


def test_learn_within_leaves_scores_under_the_cap_as_they_are() -> None:
    plain, capped = bank(), bank(learn_within=2.0)
    for score in (1.0, 1.1, 0.9, 1.2):
        assert capped.judge("a", score).threshold == plain.judge("a", score).threshold
