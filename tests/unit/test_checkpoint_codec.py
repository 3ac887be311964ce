"""monitor.service.checkpoint_codec and what goes into a record: exact floats, records that no longer fit, the
threshold statistics of another model, and what the scorer learned per series."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.engine.detector import Detector, Engine
from monitor.models.online import OnlineNormalisation
from monitor.records import Alert
from monitor.service.checkpoint import Checkpoints
from monitor.service.checkpoint_codec import StateRecord, decode_page, encode_page

from .test_checkpoint import MemoryChangelog, engine
from .test_detector import FakeScorer, normal, pt, settings


def roundtrip(state: dict, detector: str = "d", partition: int = 2, offset: int = 7) -> StateRecord:
    """One state through a page of its own and back."""
    (record,) = decode_page(b"\x00page/0", encode_page([StateRecord("s", detector, partition, offset, state)]))
    return record


def page(detector: str, offset: int, state: dict, series: str = "s") -> bytes:
    return encode_page([StateRecord(series, detector, 0, offset, state)])


def test_records_that_do_not_fit_are_skipped_and_counted():
    changelog = MemoryChangelog()
    changelog.write(0, b"x", b"not json at all")
    changelog.write(0, b"y", page("other-detector", 5, {}, "y"))
    narrow = {"model_version": "fake-1", "window": {"data": np.zeros((3, 2)), "ts": np.zeros(3)}}
    changelog.write(0, b"z", page("default", 5, narrow, "z"))
    changelog.flush()
    checkpoints = Checkpoints(engine(), changelog)
    checkpoints.on_assigned({0})
    checkpoints.sync()
    assert checkpoints.counts["incompatible"] == 3
    assert checkpoints.engine.series_tracked() == 0


def test_threshold_statistics_of_another_model_version_are_not_restored():
    first = engine()
    first.process([pt("a", i, normal(i)) for i in range(40)])
    state = first.detectors[0].snapshot("a")
    record = roundtrip({**state, "model_version": "older"})
    second = engine()
    second.detectors[0].restore("a", record.state)
    assert second.detectors[0].thresholds.snapshot("a") is None
    np.testing.assert_array_equal(second.detectors[0].snapshot("a")["window"]["data"], state["window"]["data"])


def test_the_codec_keeps_floats_exact_including_non_finite_ones():
    state = {
        "values": np.array([0.1, 1 / 3, float("inf")]), "total": 0.1 + 0.2, "nan": float("nan"),
        "nested": {"pairs": [(1.5, float("-inf"))], "count": 3, "name": "x", "none": None},
        "numpy_scalars": [np.float64("nan"), np.float64(0.1), np.int64(4)],
    }  # fmt: skip
    record = roundtrip(state)
    assert (record.series, record.detector, record.partition, record.offset) == ("s", "d", 2, 7)
    assert record.state["values"].tolist() == [0.1, 1 / 3, float("inf")]
    assert record.state["total"] == 0.1 + 0.2
    assert np.isnan(record.state["nan"])
    assert record.state["nested"] == {"pairs": [[1.5, float("-inf")]], "count": 3, "name": "x", "none": None}
    nan, tenth, four = record.state["numpy_scalars"]
    assert np.isnan(nan) and (tenth, four) == (0.1, 4)
    alert = Alert("a1", "firing", "d", "s", {}, "m1", 1.0, 2.0, None, float("inf"), 0.5, "critical", 0.0, 2.0,
                  (("value", float("inf")),))  # fmt: skip
    assert roundtrip({"firing": alert}).state["firing"] == alert
    with pytest.raises(ValueError):
        decode_page(b"s", b'{"schema": "something/else"}')


class LearningScorer(FakeScorer):
    """A scorer with per-series state, like the online normalisation of series the model never saw."""

    def __init__(self) -> None:
        super().__init__(window=8)
        self.learned: dict[str, int] = {}

    def score(self, series, batch, start=None, end=None):
        for name in series:
            self.learned[name] = self.learned.get(name, 0) + 1
        return super().score(series, batch)

    def series_state(self, series: str) -> dict | None:
        return None if series not in self.learned else {"windows": self.learned[series]}

    def restore_series(self, series: str, state) -> None:
        self.learned[series] = state["windows"]


def test_what_the_scorer_learned_per_series_is_checkpointed_too():
    first = Detector(settings(window=8, stride=2), LearningScorer())
    Engine([first]).process([pt("a", i, normal(i)) for i in range(20)])
    record = roundtrip(first.snapshot("a"))
    second = Detector(settings(window=8, stride=2), LearningScorer())
    second.restore("a", record.state)
    assert second.scorer.learned == {"a": 7} == first.scorer.learned


def test_online_normalisation_round_trips_through_a_record():
    online = OnlineNormalisation(np.array([0.01, 0.01]), warmup=4, max_series=10)
    online.rows(["new"] * 3, np.random.default_rng(0).normal(5, 2, (3, 8, 2)))
    record = roundtrip({"online": online.snapshot("new")})
    again = OnlineNormalisation(np.array([0.01, 0.01]), warmup=4, max_series=10)
    again.restore("new", record.state["online"])
    probe = np.random.default_rng(1).normal(5, 2, (1, 8, 2))
    for before, after in zip(online.rows(["new"], probe), again.rows(["new"], probe), strict=True):
        np.testing.assert_array_equal(before, after)
    with pytest.raises(ValueError):
        again.restore("other", {"windows": 1, "sums": np.zeros((3, 5))})
