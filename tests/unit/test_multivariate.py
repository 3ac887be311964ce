"""Multivariate entities: five features per host, from `values` points or from univariate series joined
by a label; an anomaly in one feature is named first in the alert's `top_features`.

One small LSTM autoencoder (the default kind) is trained per module on five seasonal features of three
hosts; the engine then scores a live continuation with a fault injected in one feature of one host.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.engine.alerting import AlertSettings
from monitor.engine.detector import Detector, DetectorSettings, Engine
from monitor.engine.entities import EntityAssembler, Selector
from monitor.engine.threshold import ThresholdSettings
from monitor.models import LoadedModel, SeriesData, TorchScorer, TrainOptions, train_model
from monitor.records import Alert, Point

FEATURES = ("cpu", "mem", "rps", "disk", "net")
HOSTS = ("web-01", "web-02", "web-03")
WINDOW, HISTORY, LIVE, T0, STEP = 16, 300, 120, 1.8e9, 60.0
FAULT = ("web-02", "disk", HISTORY + 60)  # host, feature, first faulty point


def host_values(host: str, start: int, count: int) -> np.ndarray:
    """(count, 5): each feature its own level, scale and phase of a period-24 sine, plus 5 % noise."""
    h = HOSTS.index(host)
    t = np.arange(start, start + count)[:, None]
    f = np.arange(len(FEATURES))[None, :]
    noise = np.random.default_rng([h, start]).standard_normal((count, len(FEATURES)))
    values = (10 * f + h) + (1 + f) * (np.sin(2 * np.pi * (t + 3 * f + 5 * h) / 24) + 0.05 * noise)
    host_, feature, first = FAULT
    if host == host_:
        faulty = t[:, 0] >= first
        values[faulty, FEATURES.index(feature)] += 4 * (1 + FEATURES.index(feature))
    return values


def live_points(univariate: bool = False) -> list[Point]:
    """The live continuation in time order, as `values` points or as one univariate point per feature."""
    out = []
    for i in range(HISTORY, HISTORY + LIVE):
        for host in HOSTS:
            row = host_values(host, i, 1)[0]
            ts, labels = T0 + STEP * i, {"host": host}
            if univariate:
                out += [
                    Point(f"{host}/{f}", ts, {"value": float(v)}, labels) for f, v in zip(FEATURES, row, strict=True)
                ]
            else:
                out.append(Point(host, ts, dict(zip(FEATURES, row.tolist(), strict=True)), labels))
    return out


@pytest.fixture(scope="module", params=[("lstm", 16), ("dense", 64), ("conv", 16)], ids=lambda p: p[0])
def trained(request: pytest.FixtureRequest) -> LoadedModel:
    kind, hidden = request.param
    data = {h: SeriesData(T0 + STEP * np.arange(HISTORY), host_values(h, 0, HISTORY)) for h in HOSTS}
    options = TrainOptions(
        kind=kind, window=WINDOW, hidden=hidden, latent=8, epochs=8, batch_size=64, learning_rate=1e-2, patience=3
    )
    model, metadata = train_model(data, FEATURES, options, progress=False)
    return LoadedModel(model, metadata)


def engine(trained: LoadedModel, entity_label: str | None = None) -> Engine:
    settings = DetectorSettings(
        name="hosts",
        series="web-*",
        features=FEATURES,
        window=WINDOW,
        stride=2,
        threshold=ThresholdSettings(warmup=4, history=256, k=4.0),
        alerting=AlertSettings(for_windows=2, resolve_after=3),
        entity_label=entity_label,
    )
    return Engine([Detector(settings, TorchScorer(trained))])


def firing(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.status == "firing"]


def test_an_anomaly_in_one_feature_of_five_is_named_first(trained: LoadedModel) -> None:
    alerts = engine(trained).process(live_points()).alerts

    [alert] = firing(alerts)
    host, feature, first = FAULT
    assert alert.series == host
    assert alert.started_at >= T0 + STEP * first
    assert alert.top_features[0][0] == feature
    shares = [share for _, share in alert.top_features]
    assert shares == sorted(shares, reverse=True)
    # A recurrent encoder spreads some of one feature's fault over the others' reconstructions.
    assert shares[0] > 1.5 * shares[1]


def test_univariate_series_grouped_by_a_label_alert_like_the_values_form(trained: LoadedModel) -> None:
    grouped = engine(trained, entity_label="host")

    alerts = grouped.process(live_points(univariate=True)).alerts

    expected = engine(trained).process(live_points()).alerts
    assert [(a.series, a.status, a.started_at, a.top_features) for a in alerts] == [
        (a.series, a.status, a.started_at, a.top_features) for a in expected
    ]
    assert dict(alerts[0].labels) == {"host": FAULT[0]}
    assert grouped.dropped() == {}


def test_selector_needs_glob_labels_and_for_entities_a_known_feature_suffix() -> None:
    plain = Selector("web-*", (("dc", "eu1"),))
    entity = Selector("web-*", (), "host", ("cpu", "mem"))

    assert plain.matches("web-01/cpu", {"dc": "eu1", "host": "web-01"})
    assert not plain.matches("web-01/cpu", {"dc": "us1"})
    assert not plain.matches("db-01/cpu", {"dc": "eu1"})
    assert entity.matches("web-01/cpu", {"host": "web-01"})
    assert not entity.matches("web-01/disk", {"host": "web-01"}), "a feature the detector does not have"
    assert not entity.matches("web-01/cpu", {}), "no entity label"


def test_entity_rows_complete_in_any_feature_order_and_stale_ones_are_counted() -> None:
    assembler = EntityAssembler("host", ("cpu", "mem"), max_entities=10)
    labels = {"host": "h"}

    assert assembler.add(Point("h/mem", 1.0, {"value": 2.0}, labels)) is None
    assert assembler.add(Point("h/cpu", 2.0, {"value": 9.0}, labels)) is None  # ts 1 still lacks cpu
    joined = assembler.add(Point("h/cpu", 1.0, {"value": 1.0}, labels))
    assert joined == Point("h", 1.0, {"cpu": 1.0, "mem": 2.0}, labels)
    assert assembler.add(Point("h/mem", 3.0, {"value": 3.0}, labels)) is None
    assert assembler.add(Point("h/cpu", 3.0, {"value": 3.0}, labels)) is not None
    assert assembler.dropped == {"incomplete_row": 1}, "ts 2 never got its mem value and was overtaken"
