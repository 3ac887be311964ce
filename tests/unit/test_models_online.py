"""Online normalisation of series the model never saw: robust, frozen after the warm-up, bounded in memory."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.models import LoadedModel, TorchScorer, TrainOptions, train_model
from monitor.models.normalisation import FeatureStats
from monitor.models.online import OnlineNormalisation, fleet_alike
from monitor.models.windowing import sliding_windows

from .seasonal_data import SERIES, WINDOW, future_windows, history, seasonal

FLOOR = np.array([1e-6])


def windows_of(values: np.ndarray, stride: int = 4) -> np.ndarray:
    return sliding_windows(values, WINDOW, stride)


def learn(online: OnlineNormalisation, name: str, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    for window in windows:
        means, stds, _ = online.rows([name], window[None])
    return means[0], stds[0]


def test_statistics_of_an_unseen_series_match_its_whole_history() -> None:
    values = seasonal("new-host/cpu", 0, 400)
    online = OnlineNormalisation(FLOOR, warmup=80, max_series=10)

    mean, std = learn(online, "new-host/cpu", windows_of(values))

    assert mean[0] == pytest.approx(values.mean(), abs=0.05)
    assert std[0] == pytest.approx(values.std(), rel=0.05), "window variance plus the variance of window means"


def test_a_spike_during_the_warm_up_does_not_set_the_scale() -> None:
    values = seasonal("new-host/cpu", 0, 400)
    spiked = values.copy()
    spiked[100:103] += 200.0

    _, clean = learn(OnlineNormalisation(FLOOR, 80, 10), "s", windows_of(values))
    _, robust = learn(OnlineNormalisation(FLOOR, 80, 10), "s", windows_of(spiked))

    assert robust[0] == pytest.approx(clean[0], rel=0.05)


def test_a_series_at_one_value_with_recurring_spikes_learns_their_scale() -> None:
    """An error counter at 0 with a burst of 20 every 100 points (NAB's `art_increase_spike_density`):
    more than half of every window is one value, so the median absolute deviation is 0 and a rule of
    "beyond 5 MADs" would leave out every spike, learn the sd floor, and put each later spike thousands of
    sds out. A series whose robust variance is 0 takes the variance of its windows with every value in."""
    values = np.zeros((400, 1))
    values[::100] = values[6::100] = 20.0
    online = OnlineNormalisation(FLOOR, 80, 10)

    _, std = learn(online, "errors", windows_of(values))

    assert std[0] == pytest.approx(values.std(), rel=0.5)
    assert learn(OnlineNormalisation(FLOOR, 80, 10), "flat", windows_of(np.zeros((400, 1))))[1] == FLOOR
    legacy = online.snapshot("errors")
    legacy["sums"] = legacy["sums"][:3]  # written before the fourth sum was kept: restored without the fallback
    again = OnlineNormalisation(FLOOR, 80, 10)
    again.restore("errors", legacy)
    assert again.rows(["errors"], windows_of(values)[:1])[1][0] == FLOOR


def test_the_statistics_freeze_after_the_warm_up() -> None:
    online = OnlineNormalisation(FLOOR, warmup=10, max_series=10)
    before = learn(online, "s", windows_of(seasonal("s", 0, 200)))

    after = learn(online, "s", windows_of(seasonal("s", 200, 200) + 50.0))

    np.testing.assert_array_equal(after, before)


def test_at_most_max_series_are_kept_least_recently_scored_first_out() -> None:
    online = OnlineNormalisation(FLOOR, warmup=4, max_series=2)
    window = seasonal("s", 0, WINDOW)[None]
    for name in ("a", "b", "a", "c"):
        online.rows([name], window)
    assert len(online) == 2
    assert set(online._series) == {"a", "c"}


@pytest.fixture(scope="module")
def trained() -> LoadedModel:
    options = TrainOptions(kind="dense", window=WINDOW, hidden=16, latent=8, epochs=8, learning_rate=1e-2)
    model, metadata = train_model(history(), ["value"], options, progress=False)
    return LoadedModel(model, metadata)


def test_an_unseen_series_scores_like_a_known_one_once_it_has_learned_its_level(trained: LoadedModel) -> None:
    """A new host at another level and scale: pooled statistics make all its windows look anomalous."""
    new = seasonal("new-host/cpu", 0, 400) * 10 + 300  # level 340, nothing like the training series
    windows = windows_of(new)
    online = TorchScorer(trained, online_warmup=40)
    pooled = TorchScorer(trained)

    scores = online.score(["new-host/cpu"] * len(windows), windows).scores
    known = online.score(["web-01/cpu"] * 40, future_windows("web-01/cpu", 40)).scores

    assert np.median(scores[-20:]) < 3 * np.median(known)
    assert np.median(pooled.score(["new-host/cpu"] * 20, windows[-20:]).scores) > 100 * np.median(known)
    assert online.online is not None and len(online.online) == 1, "known series never enter the online table"
    assert set(trained.metadata.normalisation.series) == set(SERIES)


def test_a_batch_with_several_windows_per_series_normalises_each_like_one_at_a_time() -> None:
    windows = {name: windows_of(seasonal(name, 0, 200) * (k + 1)) for k, name in enumerate(["a", "b"])}
    names = [name for i in range(12) for name in ("a", "b")]  # warm-up 5 ends inside the batch
    batch = np.stack([windows[name][i] for i in range(12) for name in ("a", "b")])
    one_at_a_time = OnlineNormalisation(FLOOR, warmup=5, max_series=10)
    expected = [one_at_a_time.rows([name], window[None]) for name, window in zip(names, batch, strict=True)]

    means, stds, provisional = OnlineNormalisation(FLOOR, warmup=5, max_series=10).rows(names, batch)

    np.testing.assert_allclose(means, np.concatenate([m for m, _, _ in expected]), rtol=1e-12)
    np.testing.assert_allclose(stds, np.concatenate([s for _, s, _ in expected]), rtol=1e-12)
    np.testing.assert_array_equal(provisional, np.concatenate([p for _, _, p in expected]))


def test_a_new_series_that_looks_like_the_fleet_keeps_the_fleets_statistics() -> None:
    """A warm-up shorter than a cycle misjudges a seasonal series' level and spread; the fleet's do not (issue 18)."""
    fleet = FeatureStats(np.array([0.0]), np.array([1.0]))
    part_of_a_cycle = np.sin(np.arange(100) / 30 - 1.5)[:, None] * 1.4  # its own mean 0.12, sd 1.0
    like = OnlineNormalisation(FLOOR, warmup=20, max_series=10, fleet=fleet)
    elsewhere = OnlineNormalisation(FLOOR, warmup=20, max_series=10, fleet=fleet)

    assert learn(like, "s", windows_of(part_of_a_cycle, stride=2)) == (fleet.mean, fleet.std)
    mean, std = learn(elsewhere, "s", windows_of(part_of_a_cycle * 10 + 300, stride=2))
    assert mean[0] > 250 and std[0] > 2.0, "a series at its own level keeps its own statistics"


def test_a_fleet_at_different_loads_gives_a_new_series_its_own_statistics() -> None:
    """Pooled over hosts at different levels, the fleet's statistics normalised none of them in training."""
    fleet = FeatureStats(np.array([0.0]), np.array([1.0]))
    part_of_a_cycle = np.sin(np.arange(100) / 30 - 1.5)[:, None] * 1.4
    mixed = OnlineNormalisation(FLOOR, warmup=20, max_series=10, fleet=fleet, alike=np.array([False]))
    own = OnlineNormalisation(FLOOR, warmup=20, max_series=10)

    mean, std = learn(mixed, "s", windows_of(part_of_a_cycle, stride=2))

    assert (mean, std) == learn(own, "s", windows_of(part_of_a_cycle, stride=2))
    assert (mean, std) != (fleet.mean, fleet.std)


def test_training_series_are_one_fleet_on_a_feature_only_where_they_share_level_and_scale() -> None:
    def stats(mean: list[float], std: list[float]) -> FeatureStats:
        return FeatureStats(np.array(mean), np.array(std))

    same = [stats([0.0, 5.0], [1.0, 2.0]), stats([0.1, 5.0], [1.1, 2.0]), stats([-0.1, 5.0], [0.9, 2.0])]
    levels = [stats([0.0, 5.0], [1.0, 2.0]), stats([0.0, 6.0], [1.0, 2.0]), stats([0.0, 4.0], [1.0, 2.0])]
    scales = [stats([0.0, 5.0], [1.0, 2.0]), stats([0.0, 5.0], [1.0, 4.0]), stats([0.0, 5.0], [1.0, 1.0])]

    assert fleet_alike(same).tolist() == [True, True]
    assert fleet_alike(levels).tolist() == [True, False]
    assert fleet_alike(scales).tolist() == [True, False]
    assert fleet_alike(same[:1]).tolist() == [True, True], "one training series: its statistics are the pooled ones"


def test_one_batch_of_many_series_learns_exactly_as_one_window_at_a_time() -> None:
    """The batch path learns all series at once (round r: the r-th window of each); the arithmetic must be
    the same as one window at a time, fleet statistics and the end of the warm-up inside the batch included."""
    fleet = FeatureStats(np.array([0.0, 5.0]), np.array([1.0, 2.0]))
    rng = np.random.default_rng(3)
    names = [f"s{i}" for i in rng.integers(0, 6, size=90)]  # uneven: some series end their warm-up here
    batch = rng.normal(size=(90, WINDOW, 2)) * [1.0, 2.0] + [0.0, 5.0]
    batch[names.index("s1") :: 7] *= 30  # some windows far from the fleet
    one_at_a_time = OnlineNormalisation(FLOOR.repeat(2), warmup=9, max_series=4, fleet=fleet)
    expected = [one_at_a_time.rows([name], window[None]) for name, window in zip(names, batch, strict=True)]

    batched = OnlineNormalisation(FLOOR.repeat(2), warmup=9, max_series=4, fleet=fleet)
    means, stds, provisional = batched.rows(names, batch)

    np.testing.assert_array_equal(means, np.concatenate([m for m, _, _ in expected]))
    np.testing.assert_array_equal(stds, np.concatenate([s for _, s, _ in expected]))
    np.testing.assert_array_equal(provisional, np.concatenate([p for _, _, p in expected]))
    assert provisional.any() and not provisional.all()
    for name in set(names[-4:]):
        assert batched.snapshot(name)["windows"] == one_at_a_time.snapshot(name)["windows"]
        np.testing.assert_array_equal(batched.snapshot(name)["sums"], one_at_a_time.snapshot(name)["sums"])
