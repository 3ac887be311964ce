"""monitor.service.reload: a running detector swaps in new model versions and refuses bad ones, keeping its state.

Versions are tiny dense models (a fraction of a second each) published to a real store on disk; the
reloader runs with a fake clock, so "every interval" is exact and no test sleeps.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from monitor.config import DetectorConfig
from monitor.config.model import ModelSettings, TrainingSettings
from monitor.engine.detector import Detector, DetectorSettings, Engine
from monitor.engine.threshold import ThresholdSettings
from monitor.engine.verdicts import Outcome
from monitor.models import LoadedModel, SeriesData, TorchScorer, TrainOptions, train_model
from monitor.models.store import point_current, publish, signature
from monitor.records import Point
from monitor.service.reload import ModelReloader, load_scorer

from .seasonal_data import WINDOW, history, seasonal, sine

OPTIONS = TrainOptions(kind="dense", window=WINDOW, hidden=16, latent=8, epochs=3, batch_size=64, learning_rate=1e-2)


def version(seed: int, **changes: object) -> LoadedModel:
    model, metadata = train_model(history(120), ["value"], dataclasses.replace(OPTIONS, seed=seed, **changes), False)
    return LoadedModel(model, metadata)


@pytest.fixture(scope="module")
def versions() -> dict[str, LoadedModel]:
    return {
        "a": version(0),
        "b": version(1),
        "window": version(2, window=WINDOW + 8),
        "nll": version(3, kind="vae", score_method="nll", epochs=1),
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Running:
    """One detector serving a store, with a reloader on a fake clock and a record of the swaps."""

    def __init__(self, store: Path, interval: float = 5.0) -> None:
        model = ModelSettings(path=store, online_warmup=8, reload_interval=interval)
        settings = DetectorSettings(window=WINDOW, stride=4, threshold=ThresholdSettings(warmup=2))
        self.config = DetectorConfig(settings, model, TrainingSettings())
        self.detector = Detector(settings, load_scorer(self.config, threads=1))
        self.engine = Engine([self.detector])
        self.clock = Clock()
        self.swapped: list[str] = []
        self.reloader = ModelReloader(
            [(self.detector, store, interval)],
            load=lambda d: load_scorer(self.config, 1, d.scorer),
            signature=signature,
            on_swap=lambda d: self.swapped.append(d.scorer.version),
            clock=self.clock,
        )

    def step(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        self.reloader.after_step([], Outcome())

    def feed(self, series: str, start: int, count: int) -> Outcome:
        values = seasonal(series, start, count)[:, 0]
        return self.engine.process(
            [Point(series, 1.7e9 + 60.0 * (start + i), {"value": v}) for i, v in enumerate(values)]
        )


@pytest.fixture
def store(tmp_path: Path, versions: dict[str, LoadedModel]) -> Path:
    publish(versions["a"].module, versions["a"].metadata, tmp_path / "store")
    return tmp_path / "store"


def test_a_new_version_is_swapped_in_when_due_keeping_windows_and_thresholds(store, versions) -> None:
    running = Running(store)
    running.feed("web-01/cpu", 0, 60)
    state_before = running.detector.snapshot("web-01/cpu")
    publish(versions["b"].module, versions["b"].metadata, store)

    running.step(4.9)
    assert running.detector.scorer.version == versions["a"].metadata.version, "not due yet"
    running.step(0.2)

    assert running.swapped == [versions["b"].metadata.version]
    assert running.detector.scorer.version == versions["b"].metadata.version
    state_after = running.detector.snapshot("web-01/cpu")
    assert len(running.detector.windows) == 1
    before, after = state_before["threshold"], state_after["threshold"]
    assert after["judged"] == before["judged"] > 0
    assert before["scale"] != after["scale"], "the two models' validation scores spread differently"
    np.testing.assert_allclose(after["sums"], before["sums"] * after["scale"] / before["scale"], rtol=1e-12)
    verdicts = running.feed("web-01/cpu", 60, 8).verdicts
    assert len(verdicts) == 2, "the window kept filling across the swap: the next ones are due every stride"


def test_a_request_checks_at_once_and_nothing_changes_without_a_new_version(store, versions, caplog) -> None:
    running = Running(store, interval=0.0)
    running.step(1000.0)
    assert running.swapped == []
    publish(versions["b"].module, versions["b"].metadata, store)
    running.step(1000.0)
    assert running.swapped == [], "interval 0: only on request (SIGHUP)"

    running.reloader.request()
    running.step()
    assert running.swapped == [versions["b"].metadata.version]
    with caplog.at_level(logging.INFO, logger="monitor.service.reload"):
        running.reloader.request()
        running.step()
    assert running.swapped == [versions["b"].metadata.version]
    assert "model_unchanged" in caplog.text


def test_a_corrupt_version_is_refused_once_and_the_old_one_keeps_serving(store, versions, caplog) -> None:
    running = Running(store)
    broken = store / "lstm-20990101-000000"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json")
    (broken / "model.pt").write_bytes(b"garbage")
    point_current(store, broken.name)

    with caplog.at_level(logging.INFO, logger="monitor.service.reload"):
        for _ in range(3):
            running.step(5.0)

    assert running.swapped == []
    assert running.detector.scorer.version == versions["a"].metadata.version
    [line] = [r.getMessage() for r in caplog.records if "model_refused" in r.getMessage()]
    assert str(broken) in line and f"serving={versions['a'].metadata.version}" in line and "not valid JSON" in line


@pytest.mark.parametrize(
    ("name", "complaint"), [("window", "has window 32, config says window 24"), ("nll", "scores by nll")]
)
def test_an_incompatible_version_is_refused_naming_both(store, versions, caplog, name: str, complaint: str) -> None:
    running = Running(store)
    publish(versions[name].module, versions[name].metadata, store)

    with caplog.at_level(logging.ERROR, logger="monitor.service.reload"):
        running.step(5.0)

    assert running.swapped == []
    assert complaint in caplog.text and versions[name].metadata.version in caplog.text
    assert versions["a"].metadata.version in caplog.text


def test_what_was_learned_online_about_unseen_series_survives_a_swap(store, versions) -> None:
    running = Running(store)
    running.feed("new-host/cpu", 0, 60)
    learned = running.detector.scorer.online.rows(["new-host/cpu"], np.zeros((1, WINDOW, 1)))
    publish(versions["b"].module, versions["b"].metadata, store)
    running.step(5.0)

    after = running.detector.scorer.online.rows(["new-host/cpu"], np.zeros((1, WINDOW, 1)))

    assert running.swapped
    for was, now in zip(learned, after, strict=True):
        np.testing.assert_allclose(now, was)


def test_alerts_after_a_swap_carry_the_new_version(store, versions) -> None:
    running = Running(store)
    running.feed("web-01/cpu", 0, 80)
    publish(versions["b"].module, versions["b"].metadata, store)
    running.step(5.0)
    values = seasonal("web-01/cpu", 80, 12)[:, 0]
    values[4:] += 8.0
    points = [Point("web-01/cpu", 1.7e9 + 60.0 * (80 + i), {"value": v}) for i, v in enumerate(values)]

    alerts = running.engine.process(points).alerts

    assert alerts and {a.model_version for a in alerts} == {versions["b"].metadata.version}


def test_a_retrained_model_whose_scores_spread_wider_takes_over_without_paging() -> None:
    """A daemon's model trained to convergence, then a retrained one of two epochs swapped in (scheduled
    retraining trains `retraining.epochs`, 10, from scratch): its healthy errors are about 16 times higher.
    Before the thresholds were carried into the new model's units, all 20 healthy series paged (194 alerts
    over 2,000 points); now only the 5 with a spike do."""
    rng = np.random.default_rng(18)
    phases = rng.uniform(0.0, 2 * np.pi, 20)

    train = {f"s{k}": SeriesData(np.arange(1500) * 10.0, sine(phases[k], 0, 1500, rng)[:, None]) for k in range(20)}
    options = TrainOptions(kind="dense", window=32, epochs=15, max_windows=4000, learning_rate=3e-3, patience=5)
    converged, retrained = (
        LoadedModel(*train_model(train, ["value"], dataclasses.replace(options, epochs=epochs, seed=seed), False))
        for epochs, seed in ((15, 0), (2, 1))
    )
    detector = Detector(DetectorSettings(), TorchScorer(converged))
    engine = Engine([detector])
    new = {name: sine(phases[k], 1500, 1000, rng) for k, name in enumerate(train)}
    for name in ("s0", "s1", "s2", "s3", "s4"):
        new[name][800:803] += 3.0
    fired: list[str] = []
    for start in range(0, 1000, 50):
        if start == 300:
            detector.swap_scorer(TorchScorer(retrained))
        points = [
            Point(n, (1500 + i) * 10.0, {"value": float(v[i])})
            for i in range(start, start + 50)
            for n, v in new.items()
        ]
        fired += [a.series for a in engine.process(points).alerts if a.status == "firing"]
    assert sorted(fired) == ["s0", "s1", "s2", "s3", "s4"]
