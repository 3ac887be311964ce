"""Calendar inputs (`monitor.models.seasons`): the columns, the `auto` rule, and what they are for: a
daily step that does not come is invisible to a short window without them and stands out with them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from monitor.errors import ModelError
from monitor.models import SeriesData, TorchScorer, TrainOptions, load_artifact, save_artifact, train_model
from monitor.models.seasons import SCALE, choose, columns, explicit

STEP = 300.0
PER_DAY = 288
MIDNIGHT = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC
WINDOW = 16


def office_hours(days: int, missing_day: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """5-minute points: 1 from 08:00 to 20:00 UTC, 0 otherwise, plus 3 % noise; on `missing_day` the
    morning step does not come until 10:00."""
    ts = MIDNIGHT + STEP * np.arange(days * PER_DAY)
    hour = (ts - MIDNIGHT) % 86_400 / 3600
    day = ((ts - MIDNIGHT) // 86_400).astype(int)
    high = (hour >= 8) & (hour < 20)
    if missing_day is not None:
        high &= ~((day == missing_day) & (hour < 10))
    values = high.astype(float) + 0.03 * np.random.default_rng(7).standard_normal(len(ts))
    return ts, values[:, None]


def test_columns_are_the_phase_of_each_step_in_the_period():
    start, end = np.array([MIDNIGHT]), np.array([MIDNIGHT + 6 * 3600])
    cols = columns(start, end, 7, ("day", "week")) / SCALE
    assert cols.shape == (1, 7, 4)
    np.testing.assert_allclose(cols[0, 0, :2], [0.0, 1.0], atol=1e-6)  # midnight
    np.testing.assert_allclose(cols[0, -1, :2], [1.0, 0.0], atol=1e-6)  # 06:00 is a quarter of the day
    np.testing.assert_allclose(cols[0, 3, :2], [np.sin(np.pi / 4), np.cos(np.pi / 4)], atol=1e-6)
    week_phase = 2 * np.pi * ((MIDNIGHT % (7 * 86_400)) + 6 * 3600) / (7 * 86_400)
    np.testing.assert_allclose(cols[0, -1, 2:], [np.sin(week_phase), np.cos(week_phase)], atol=1e-6)


def test_auto_takes_a_period_only_where_the_data_repeats_it():
    ts, values = office_hours(3)
    noise = np.random.default_rng(1).standard_normal((len(ts), 1))
    assert choose("auto", {"office": (ts, values)}) == ("day",)
    assert choose("auto", {"noise": (ts, noise)}) == ()
    short = PER_DAY * 3 // 2  # a day and a half cannot show that a day repeats
    assert choose("auto", {"office": (ts[:short], values[:short])}) == ()
    assert choose("auto", {"a": (ts, values), "b": (ts, noise), "c": (ts, noise)}) == ()  # the median decides
    assert choose("day+week", {"noise": (ts, noise)}) == ("day", "week")
    assert explicit("none") == () and explicit("auto") is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Artifacts of the same autoencoder trained on three days of office hours, with and without the time
    of day."""
    ts, values = office_hours(3)
    options = TrainOptions(window=WINDOW, hidden=16, latent=8, epochs=60, patience=10, learning_rate=5e-3, seed=0)
    paths = {}
    for calendar in ("day", "none"):
        with_calendar = TrainOptions(**{**_fields(options), "calendar": calendar})
        module, metadata = train_model({"office": SeriesData(ts, values)}, ["value"], with_calendar, progress=False)
        path = tmp_path_factory.mktemp(calendar) / "model"
        save_artifact(module, metadata, path)
        paths[calendar] = path
    return paths


def _fields(options: TrainOptions) -> dict:
    return {name: getattr(options, name) for name in TrainOptions.__slots__}


def _day_four(missing: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Day 4's windows ending between 07:00 and 11:00, with or without the morning step."""
    ts, values = office_hours(4, missing_day=3 if missing else None)
    ends = np.arange(3 * PER_DAY + 7 * 12, 3 * PER_DAY + 11 * 12)
    windows = np.stack([values[e - WINDOW + 1 : e + 1] for e in ends])
    return windows, ts[ends - WINDOW + 1], ts[ends]


def test_a_missing_daily_step_stands_out_only_with_the_time_of_day(trained):
    normal, start, end = _day_four(missing=False)
    late, _, _ = _day_four(missing=True)
    names = ["office"] * len(normal)
    with_day, without = TorchScorer(load_artifact(trained["day"])), TorchScorer(load_artifact(trained["none"]))
    assert with_day.calendar == ("day",) and without.calendar == ()
    day_normal = with_day.score(names, normal, start, end).scores.max()
    day_late = with_day.score(names, late, start, end).scores.max()
    assert day_late > 3 * day_normal, (day_late, day_normal)
    plain_normal = without.score(names, normal, start, end).scores.max()
    plain_late = without.score(names, late, start, end).scores.max()
    assert plain_late < 1.5 * plain_normal, (plain_late, plain_normal)  # a flat morning looks like a night


def test_a_calendar_model_needs_the_times_of_its_windows(trained):
    normal, start, end = _day_four(missing=False)
    scorer = TorchScorer(load_artifact(trained["day"]))
    result = scorer.score(["office"] * len(normal), normal, start, end)
    assert result.feature_errors.shape == (len(normal), 1)  # errors of the real features only
    with pytest.raises(ModelError, match="calendar inputs"):
        scorer.score(["office"] * len(normal), normal)


def test_onnx_scores_a_calendar_model_like_torch(trained):
    normal, start, end = _day_four(missing=True)
    names = ["office"] * len(normal)
    torch_scorer = TorchScorer(load_artifact(trained["day"]))
    onnx_scorer = TorchScorer(load_artifact(trained["day"]), backend="onnx")
    assert onnx_scorer.backend == "onnx"
    np.testing.assert_allclose(
        onnx_scorer.score(names, normal, start, end).scores, torch_scorer.score(names, normal, start, end).scores,
        rtol=1e-5, atol=1e-7,
    )  # fmt: skip


def test_the_artifact_names_its_calendar_and_a_bad_one_is_refused(trained, tmp_path):
    assert load_artifact(trained["day"]).metadata.calendar == ("day",)
    broken = tmp_path / "model"
    shutil.copytree(trained["day"], broken)
    metadata = json.loads((broken / "metadata.json").read_text())
    (broken / "metadata.json").write_text(json.dumps({**metadata, "calendar": ["month"]}))
    with pytest.raises(ModelError, match=r"calendar must be a list of distinct periods.*'month'"):
        load_artifact(broken)
