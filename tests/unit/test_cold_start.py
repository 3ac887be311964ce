"""Series the model never saw must not page (issue 18): the operator's replay, on the engine, no broker.

A model is trained with the real training code on 20 series `s0..s19`, each `sin(i/30 + phase)` plus
N(0, 0.05) noise at 10 s steps; then 1,000 new points of those 20 and of 20 series `h0..h19` of the same
generator with other phases go through `Engine` with the shipped detector settings and the real
`TorchScorer`. Before the fix every new series fired at the end of its warm-up.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from monitor.config.model import ModelSettings
from monitor.engine.detector import Detector, DetectorSettings, Engine
from monitor.models import LoadedModel, SeriesData, TorchScorer, TrainOptions, train_model
from monitor.records import Point

STEP = 10.0
TRAIN_POINTS = 1500
NEW_POINTS = 1000
SPIKE_AT = 700
"""Where the spikes go: after the new series' warm-up (normalisation and threshold), before the end."""
SPIKED = ("h3", "h4", "h5", "h6", "h7")


def sine(phase: float, start: int, count: int, rng: np.random.Generator) -> np.ndarray:
    i = np.arange(start, start + count)
    return np.sin(i / 30 + phase) + rng.normal(0.0, 0.05, count)


@pytest.fixture(scope="module")
def fleet() -> tuple[LoadedModel, dict[str, np.ndarray]]:
    """The model trained on s0..s19, and the next 1,000 points of s0..s19 and of h0..h19."""
    rng = np.random.default_rng(18)
    phases = rng.uniform(0.0, 2 * np.pi, 40)
    history = {
        f"s{k}": SeriesData(np.arange(TRAIN_POINTS) * STEP, sine(phases[k], 0, TRAIN_POINTS, rng)[:, None])
        for k in range(20)
    }
    window = DetectorSettings().window
    options = TrainOptions(kind="dense", window=window, score_tail=ModelSettings().score_tail, epochs=15,
                           max_windows=4000, learning_rate=3e-3, patience=5)  # fmt: skip
    model, metadata = train_model(history, ["value"], options, progress=False)
    new = {f"s{k}": sine(phases[k], TRAIN_POINTS, NEW_POINTS, rng) for k in range(20)}
    new |= {f"h{k}": sine(phases[20 + k], TRAIN_POINTS, NEW_POINTS, rng) for k in range(20)}
    return LoadedModel(model, metadata), new


def firing(loaded: LoadedModel, values: dict[str, np.ndarray]) -> Counter[str]:
    """Firing alerts per series when `values` are replayed in polls of 50 time steps, as the daemon would."""
    scorer = TorchScorer(loaded, online_warmup=ModelSettings().online_warmup)
    engine = Engine([Detector(DetectorSettings(), scorer)])
    alerts: Counter[str] = Counter()
    for start in range(0, NEW_POINTS, 50):
        points = [
            Point(name, (TRAIN_POINTS + i) * STEP, {"value": float(series[i])})
            for i in range(start, start + 50)
            for name, series in values.items()
        ]
        alerts.update(a.series for a in engine.process(points).alerts if a.status == "firing")
    return alerts


def test_new_series_of_the_training_distribution_do_not_alert(fleet) -> None:
    loaded, values = fleet

    alerts = firing(loaded, values)

    assert not {s: n for s, n in alerts.items() if s.startswith("s")}, "the trained names"
    assert not {s: n for s, n in alerts.items() if s.startswith("h")}, "the new names, as the trained ones"


def test_a_spike_in_a_new_series_still_alerts(fleet) -> None:
    loaded, values = fleet
    spiked = {name: series.copy() for name, series in values.items()}
    for name in SPIKED:
        spiked[name][SPIKE_AT : SPIKE_AT + 3] += 3.0

    alerts = firing(loaded, spiked)

    assert set(alerts) == set(SPIKED)
