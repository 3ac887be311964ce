"""Series the model never saw must not page (issue 18): the operator's replay, on the engine, no broker.

A model is trained with the real training code on 20 series `s0..s19`, each `sin(i/30 + phase)` plus
N(0, 0.05) noise at 10 s steps; then 1,000 new points of those 20 and of 20 series `h0..h19` of the same
generator with other phases go through `Engine` with the shipped detector settings and the real
`TorchScorer`. Before the fix every new series fired at the end of its warm-up. The same replay over a
fleet of hosts at different loads (`monitor.synthetic`) checks that such a fleet's pooled statistics are
not given to its new hosts.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from monitor.config.model import ModelSettings
from monitor.engine.detector import Detector, DetectorSettings, Engine
from monitor.models import LoadedModel, SeriesData, TorchScorer, TrainOptions, train_model
from monitor.records import Point
from monitor.synthetic import StreamSpec, generate

from .seasonal_data import sine

STEP = 10.0
TRAIN_POINTS = 1500
NEW_POINTS = 1000
SPIKE_AT = 700
"""Where the spikes go: after the new series' warm-up (normalisation and threshold), before the end."""
SPIKED = ("h3", "h4", "h5", "h6", "h7")


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


@pytest.fixture(scope="module")
def mixed_fleet() -> tuple[LoadedModel, dict[str, np.ndarray]]:
    """A model trained on 20 series of hosts at different loads (`monitor.synthetic`: levels 0.3 to 0.6,
    amplitudes 0.1 to 0.3, a cycle of 48 points), and the next 1,000 points of those and of 20 other hosts
    drawn alike."""
    spec = StreamSpec(series=40, points=TRAIN_POINTS + NEW_POINTS, anomalous_series=0, step_s=STEP, seed=19)
    values, _ = generate(spec)
    names = [f"s{k}" for k in range(20)] + [f"h{k}" for k in range(20)]
    times = np.arange(TRAIN_POINTS) * STEP
    history = {names[k]: SeriesData(times, values[k, :TRAIN_POINTS, None]) for k in range(20)}
    options = TrainOptions(kind="dense", window=DetectorSettings().window, score_tail=ModelSettings().score_tail,
                           epochs=15, max_windows=4000, learning_rate=3e-3, patience=5)  # fmt: skip
    model, metadata = train_model(history, ["value"], options, progress=False)
    return LoadedModel(model, metadata), {name: values[k, TRAIN_POINTS:] for k, name in enumerate(names)}


def test_new_hosts_of_a_fleet_at_different_loads_keep_their_own_statistics(mixed_fleet) -> None:
    """The pooled statistics of hosts at different levels normalised none of them in training: new hosts
    normalised by them sat off the model's normal every window, and 17 of these 20 fired at the end of
    their warm-up. With their own statistics 2 graze their young thresholds (1.11 and 1.14 x) once each."""
    loaded, values = mixed_fleet

    alerts = firing(loaded, values)

    assert not {s: n for s, n in alerts.items() if s.startswith("s")}, "the trained names"
    assert len([s for s in alerts if s.startswith("h")]) <= 4, f"new hosts firing: {dict(alerts)}"
    assert scorer_alike(loaded) == [False], "hosts at different loads are not one fleet"


def test_the_fleet_of_one_generator_is_one_fleet(fleet) -> None:
    assert scorer_alike(fleet[0]) == [True]


def scorer_alike(loaded: LoadedModel) -> list[bool]:
    online = TorchScorer(loaded, online_warmup=ModelSettings().online_warmup).online
    assert online is not None
    return online.alike.tolist()
