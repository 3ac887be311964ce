"""Scheduled retraining: recent normal data of a bounded sample of series becomes a new version that the
reloader swaps in; anomalous windows are left out. A fake clock makes "every hour" immediate."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from monitor.config import DetectorConfig, parse_config
from monitor.config.model import ModelSettings, RetrainingSettings, TrainingSettings
from monitor.engine.detector import Detector, DetectorSettings, Engine
from monitor.engine.threshold import ThresholdSettings
from monitor.engine.verdicts import Outcome
from monitor.errors import ConfigError
from monitor.models import TrainOptions, train_model
from monitor.models.store import publish, resolve, signature
from monitor.records import Point
from monitor.service.reload import ModelReloader, load_scorer
from monitor.service.retraining import Retrainer

from .seasonal_data import SERIES, WINDOW, history, seasonal


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Path:
    options = TrainOptions(kind="dense", window=WINDOW, hidden=16, latent=8, epochs=3, learning_rate=1e-2)
    model, metadata = train_model(history(200), ["value"], options, progress=False)
    publish(model, metadata, tmp_path / "store")
    return tmp_path / "store"


def test_retraining_publishes_a_version_without_the_anomalies_that_the_reloader_swaps_in(store: Path) -> None:
    settings = DetectorSettings(window=WINDOW, stride=2, threshold=ThresholdSettings(warmup=4))
    config = DetectorConfig(
        settings,
        ModelSettings(path=store, kind="dense", hidden=16, latent=8, online_warmup=0),
        dataclasses.replace(TrainingSettings(), learning_rate=1e-2),
        RetrainingSettings(every=3600.0, history=150, max_series=2, epochs=2),
    )
    detector = Detector(settings, load_scorer(config, threads=1))
    engine, clock = Engine([detector]), Clock()
    retrainer = Retrainer(detector, config, clock=clock)
    reloader = ModelReloader(
        [(detector, store, 1.0)], lambda d: load_scorer(config, 1, d.scorer), signature, lambda d: None, clock
    )
    first = detector.scorer.version
    names = list(SERIES)
    for step in range(200, 400, 10):
        points = []
        for name in names:
            values = seasonal(name, step, 10)[:, 0]
            if name == names[0] and step == 300:
                values[3] += 20 * SERIES[name][1]
            points += [Point(name, 1.7e9 + 60.0 * (step + i), {"value": float(v)}) for i, v in enumerate(values)]
        outcome = engine.process(points)
        retrainer.after_step(engine.routed(points), outcome)

    clock.now = 3599.0
    retrainer.after_step([], Outcome())
    retrainer.wait(60)
    assert resolve(store).name == first, "not due yet"
    clock.now = 3600.0
    retrainer.after_step([], Outcome())
    retrainer.wait(60)

    version = resolve(store)
    assert version.name != first
    meta = json.loads((version / "metadata.json").read_text())
    assert meta["data_range"]["source"] == "scheduled retraining in the daemon"
    assert meta["data_range"]["continued_from"] == first, "it fine-tunes the serving model"
    assert meta["data_range"]["series"] == 2, "only max_series series are kept"
    spike = 1.7e9 + 60.0 * 303
    excluded = meta["data_range"]["excluded"]
    assert any(start <= spike <= end for start, end in excluded), f"the spike at {spike} is not left out: {excluded}"
    assert meta["data_range"]["points"] < 2 * 150
    assert meta["training"]["epochs_run"] <= 2
    assert (version / "report.md").is_file()
    reloader.after_step([], Outcome())
    assert detector.scorer.version == version.name


def test_retraining_is_off_by_default_and_never_more_often_than_every_minute() -> None:
    [detector] = parse_config({}, environ={}).detectors
    assert detector.retraining.every == 0
    with pytest.raises(ConfigError, match=r"detectors\[0\]\.retraining\.every: must be 0 \(off\) or at least 60"):
        parse_config({"detectors": [{"retraining": {"every": 30}}]}, environ={})
