"""monitor.models: training quality, batched scoring, the artifact format and its safe loading.

One small model is trained per module run (a few seconds on two cores) on a synthetic seasonal signal:
three series with a period of 24 points and different levels and scales.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from monitor.errors import ModelError
from monitor.models import (
    LoadedModel,
    ModelMetadata,
    ModelShape,
    SeriesData,
    TorchScorer,
    TrainOptions,
    load_artifact,
    save_artifact,
    train_model,
)
from monitor.models import scorer as scorer_module
from monitor.models.inference import batch_shapes
from monitor.models.kinds import build_model
from monitor.models.normalisation import FeatureStats, Normalisation

from .seasonal_data import HISTORY_POINTS, SERIES, WINDOW, future_windows, history, seasonal

OPTIONS = TrainOptions(window=WINDOW, hidden=16, latent=8, epochs=8, batch_size=64, learning_rate=1e-2, patience=3)


@pytest.fixture(scope="module")
def trained() -> LoadedModel:
    model, metadata = train_model(history(), ["value"], OPTIONS, progress=False)
    return LoadedModel(model, metadata)


@pytest.fixture(scope="module")
def scorer(trained: LoadedModel) -> TorchScorer:
    return TorchScorer(trained)


@pytest.fixture(scope="module")
def artifact(trained: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_artifact(trained.module, trained.metadata, tmp_path_factory.mktemp("models") / "lstm")


@pytest.fixture
def artifact_copy(artifact: Path, tmp_path: Path) -> Path:
    """A private copy of the saved artifact that a test may damage."""
    return Path(shutil.copytree(artifact, tmp_path / "damaged"))


def mixed_batch() -> tuple[list[str], np.ndarray]:
    names = [name for name in SERIES for _ in range(5)]
    return names, np.concatenate([future_windows(name, 5) for name in SERIES])


# --- training ---------------------------------------------------------------------------------------


def test_trained_model_reconstructs_far_better_than_an_untrained_one(trained: LoadedModel, scorer: TorchScorer) -> None:
    torch.manual_seed(0)
    untrained = build_model("lstm", ModelShape(WINDOW, 1, OPTIONS.hidden, OPTIONS.latent, OPTIONS.layers)).eval()
    names, batch = mixed_batch()

    trained_error = scorer.score(names, batch).scores.mean()
    untrained_error = TorchScorer(LoadedModel(untrained, trained.metadata)).score(names, batch).scores.mean()

    assert trained_error < 0.5 * untrained_error
    assert trained.metadata.training["val_loss"] < 0.5 * trained.metadata.training["initial_val_loss"]


def test_a_spike_scores_far_above_normal_windows(scorer: TorchScorer) -> None:
    windows = future_windows("web-02/cpu", 40)
    spiked = windows[7].copy()
    spiked[-3, 0] += 6 * SERIES["web-02/cpu"][1]

    normal = scorer.score(["web-02/cpu"] * 40, windows).scores
    spike = scorer.score(["web-02/cpu"], spiked[None]).scores[0]

    assert spike > 5 * np.median(normal)


def test_metadata_describes_the_training(trained: LoadedModel) -> None:
    meta = trained.metadata
    assert re.fullmatch(r"lstm-\d{8}-[0-9a-f]{6}", meta.version)
    assert (meta.window, meta.features, meta.hidden, meta.latent, meta.layers) == (
        WINDOW,
        ("value",),
        16,
        8,
        1,
    )
    assert meta.data_range == {"start": 1.7e9, "end": 1.7e9 + 60.0 * 479, "points": 3 * 480, "series": 3}
    assert set(meta.normalisation.series) == set(SERIES)
    assert meta.normalisation.series["web-02/cpu"].mean[0] == pytest.approx(10.0, abs=0.1)
    assert meta.normalisation.series["web-02/cpu"].std[0] == pytest.approx(3.0 / np.sqrt(2), rel=0.05)
    assert 1 <= meta.training["best_epoch"] <= meta.training["epochs_run"] <= OPTIONS.epochs
    assert meta.training["seed"] == OPTIONS.seed


def test_baseline_scores_are_the_scorer_scores_of_the_validation_windows(scorer: TorchScorer) -> None:
    """Training and scoring share one reduction: rescoring the last 20 % of each series reproduces them."""
    per_series = HISTORY_POINTS - WINDOW + 1
    n_validation = round(per_series * OPTIONS.validation_split)
    names, windows = [], []
    for name, item in history().items():
        names += [name] * n_validation
        windows += [item.values[i : i + WINDOW] for i in range(per_series - n_validation, per_series)]

    rescored = scorer.score(names, np.stack(windows)).scores

    np.testing.assert_allclose(scorer.baseline_scores(), rescored, rtol=1e-6)


def test_training_is_deterministic_for_a_seed() -> None:
    options = dataclasses.replace(OPTIONS, epochs=2)
    short = history(points=120)

    first = train_model(short, ["value"], options, progress=False)[1]
    second = train_model(short, ["value"], options, progress=False)[1]

    assert first.version == second.version
    assert first.validation_scores == second.validation_scores


def test_training_continues_from_a_start_model_with_the_statistics_of_its_data(trained: LoadedModel) -> None:
    """Scheduled retraining fine-tunes the serving model: it starts from its weights (its validation loss
    before the first epoch is already the trained one's), reads the series in its data in their units now
    (a level that moved), and keeps what it knew of the others."""
    ts = 1.7e9 + 60.0 * np.arange(480)
    moved = seasonal("web-02/cpu", 0, 480) + 6.0
    data = {
        "web-01/cpu": SeriesData(ts, seasonal("web-01/cpu", 0, 480)),
        "web-02/cpu": SeriesData(ts, moved),
        "new/cpu": SeriesData(ts, seasonal("new/cpu", 0, 480)),
    }
    options = dataclasses.replace(OPTIONS, epochs=1)

    continued = train_model(data, ["value"], options, progress=False, start=trained)[1]
    fresh = train_model(data, ["value"], options, progress=False)[1]

    assert continued.training["initial_val_loss"] < 0.2 * fresh.training["initial_val_loss"]
    stats = continued.normalisation.series
    assert stats["web-02/cpu"].mean[0] == pytest.approx(16.0, abs=0.1)
    assert stats["new/cpu"].mean[0] == pytest.approx(4.0, abs=0.1)
    assert stats["db-01/cpu"].mean == pytest.approx(trained.metadata.normalisation.series["db-01/cpu"].mean)
    assert continued.calendar == trained.metadata.calendar


def test_a_start_model_of_another_shape_is_a_model_error_naming_both(trained: LoadedModel) -> None:
    options = dataclasses.replace(OPTIONS, hidden=8)
    with pytest.raises(
        ModelError, match=rf"continue training model {trained.metadata.version}: .*hidden 8 \(it has 16\)"
    ):
        train_model(history(120), ["value"], options, progress=False, start=trained)


def test_too_little_data_is_a_model_error_naming_window_and_longest_series() -> None:
    short = {
        "a": SeriesData(np.arange(10.0), np.ones((10, 1))),
        "b": SeriesData(np.arange(5.0), np.ones((5, 1))),
    }
    with pytest.raises(ModelError, match=r"window=24.*longest series: 10 points"):
        train_model(short, ["value"], OPTIONS, progress=False)


def test_a_single_window_leaves_nothing_to_validate() -> None:
    one_window = {"a": SeriesData(np.arange(24.0), seasonal("web-01/cpu", 0, 24))}
    with pytest.raises(ModelError, match="not enough data to validate"):
        train_model(one_window, ["value"], OPTIONS, progress=False)


def test_invalid_options_are_a_model_error() -> None:
    with pytest.raises(ModelError, match="validation_split"):
        TrainOptions(validation_split=1.0)


# --- scoring ----------------------------------------------------------------------------------------


def test_scores_are_the_feature_mean_of_feature_errors(trained: LoadedModel) -> None:
    scorer = two_feature_scorer(trained.metadata)
    batch = np.random.default_rng(1).normal(size=(6, WINDOW, 2))

    result = scorer.score(["a", "b", "c", "a", "b", "c"], batch)

    assert result.scores.dtype == result.feature_errors.dtype == np.float64
    assert result.feature_errors.shape == (6, 2)
    np.testing.assert_array_equal(result.scores, result.feature_errors.mean(axis=1))


def test_unknown_series_use_the_default_normalisation(scorer: TorchScorer, trained: LoadedModel) -> None:
    names, batch = mixed_batch()
    unknown = seasonal("new-host/cpu", 0, WINDOW)[None]
    default = trained.metadata.normalisation.default
    as_if_known = Normalisation(default, {"stand-in": default})

    mixed = scorer.score([*names, "new-host/cpu"], np.concatenate([batch, unknown])).scores
    reference = TorchScorer(LoadedModel(trained.module, replace_normalisation(trained.metadata, as_if_known)))

    assert mixed[-1] == pytest.approx(reference.score(["stand-in"], unknown).scores[0], rel=1e-6)
    np.testing.assert_allclose(mixed[:-1], scorer.score(names, batch).scores, rtol=1e-6)


@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scorers built in the test call the module eagerly, so its forward hooks see every chunk (a traced
    call, `traced_errors`, runs no Python hooks; test_kinds.py checks it gives the same numbers)."""
    monkeypatch.setattr(scorer_module, "traced_errors", lambda *args: None)


@pytest.mark.usefixtures("eager")
def test_a_batch_above_max_batch_is_chunked_and_matches_scoring_in_pieces(trained: LoadedModel) -> None:
    names = [name for name in SERIES for _ in range(200)]
    batch = np.concatenate([future_windows(name, 200) for name in SERIES])
    scorer = TorchScorer(trained, max_batch=256)
    scorer.score(names[:1], batch[:1])  # this thread's warm-up (test_every_thread_that_scores_...) done
    calls = []
    hook = trained.module.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
    try:
        whole = scorer.score(names, batch)
    finally:
        hook.remove()

    pieces = [scorer.score(names[i : i + 100], batch[i : i + 100]) for i in range(0, 600, 100)]

    assert calls == [256, 256, 96]  # the last 88 rows padded to a multiple of 16
    np.testing.assert_allclose(whole.scores, np.concatenate([p.scores for p in pieces]), rtol=1e-6)


@pytest.mark.usefixtures("eager")
def test_threads_score_the_chunks_of_a_batch_side_by_side_with_the_same_scores(trained: LoadedModel) -> None:
    names = [name for name in SERIES for _ in range(200)]
    batch = np.concatenate([future_windows(name, 200) for name in SERIES])
    one, two = TorchScorer(trained, threads=1), TorchScorer(trained, threads=2)
    calls: list[tuple[str, int]] = []
    hook = trained.module.register_forward_hook(
        lambda module, args, output: calls.append((threading.current_thread().name, len(args[0])))
    )
    try:
        sizes = {}
        for rows in (600, 300, 200, 100):
            calls.clear()
            np.testing.assert_allclose(
                two.score(names[:rows], batch[:rows]).scores, one.score(names[:rows], batch[:rows]).scores, rtol=1e-6
            )
            sizes[rows] = sorted(size for thread, size in calls if thread.startswith("forward"))
    finally:
        hook.remove()

    assert torch.get_num_threads() == 1
    assert sizes == {600: [96, 256, 256], 300: [144, 160], 200: [80, 128], 100: []}


@pytest.mark.parametrize("threads", [1, 2])
def test_forward_passes_meet_few_batch_shapes_whatever_the_batch_sizes(trained: LoadedModel, threads: int) -> None:
    """oneDNN keeps a primitive for every batch shape it meets: polls of every size must not mean every shape."""
    names = [name for name in SERIES for _ in range(100)]
    batch = np.concatenate([future_windows(name, 100) for name in SERIES])
    scorer = TorchScorer(trained, threads=threads)
    shapes: set[int] = set()
    hook = trained.module.register_forward_hook(lambda module, args, output: shapes.add(len(args[0])))
    try:
        singles = scorer.score(names, batch).scores
        for rows in range(1, 300):
            scores = scorer.score(names[:rows], batch[:rows]).scores
            np.testing.assert_allclose(scores, singles[:rows], rtol=1e-5)
    finally:
        hook.remove()

    assert shapes <= {1, 2, 4, 8, *range(16, 257, 16)}


@pytest.mark.usefixtures("eager")
def test_every_thread_that_scores_meets_every_batch_shape_before_its_first_batch(trained: LoadedModel) -> None:
    """oneDNN's memory per shape and thread is taken up front, not as polls of new sizes come."""
    names = [name for name in SERIES for _ in range(100)]
    batch = np.concatenate([future_windows(name, 100) for name in SERIES])
    calls: list[tuple[str, int]] = []
    hook = trained.module.register_forward_hook(
        lambda module, args, output: calls.append((threading.current_thread().name, len(args[0])))
    )
    try:
        scorer = TorchScorer(trained, threads=2, max_batch=100)
        at_load = list(calls)
        calls.clear()
        scorer.score(names[:3], batch[:3])
        first = list(calls)
        calls.clear()
        scorer.score(names[:3], batch[:3])
        second = list(calls)
        calls.clear()
        TorchScorer(trained, max_batch=512).score(names[:1], batch[:1])  # warms the default's shapes only
        large = [size for _, size in calls]
    finally:
        hook.remove()

    ladder = [1, 2, 4, 8, *range(16, 97, 16), 100]
    assert batch_shapes(100) == ladder and batch_shapes(256) == [1, 2, 4, 8, *range(16, 257, 16)]
    pool = {thread for thread, _ in at_load}
    assert len(pool) == 2 and all(thread.startswith("forward") for thread in pool)
    assert all(sorted(size for thread, size in at_load if thread == name) == ladder for name in pool)
    main = threading.current_thread().name
    assert first == [(main, size) for size in ladder] + [(main, 4)]
    assert second == [(main, 4)]
    assert large == [*batch_shapes(256), 1]


def test_score_tail_averages_only_the_last_steps(trained: LoadedModel) -> None:
    """With a model that reconstructs zeros, the error is the normalised value squared: easy to check."""
    identity = Normalisation(FeatureStats(np.zeros(1), np.ones(1)), {})
    metadata = dataclasses.replace(replace_normalisation(trained.metadata, identity), score_tail=4)
    batch = np.zeros((1, WINDOW, 1))
    batch[0, -4:, 0] = [1.0, 2.0, 3.0, 4.0]
    batch[0, 0, 0] = 100.0  # outside the tail: must not count

    result = TorchScorer(LoadedModel(ZeroModel(), metadata)).score(["x"], batch)

    assert result.scores[0] == pytest.approx((1 + 4 + 9 + 16) / 4)


def test_a_constant_training_series_gets_a_floored_std() -> None:
    normalisation = Normalisation.fit({"flat": np.full((50, 1), 7.0), "wavy": seasonal("web-01/cpu", 0, 50)})
    wobble = np.full((1, WINDOW, 1), 7.0)
    wobble[0, -1, 0] = 7.01

    normalised = normalisation.apply(["flat"], wobble)

    assert normalisation.series["flat"].std[0] > 0
    assert np.isfinite(normalised).all() and normalised[0, -1, 0] > 1


def test_a_batch_of_the_wrong_shape_is_a_model_error(scorer: TorchScorer) -> None:
    with pytest.raises(ModelError, match=r"expects a batch of shape \(B, 24, 1\)"):
        scorer.score(["a"], np.zeros((1, WINDOW + 1, 1)))


# --- artifact ---------------------------------------------------------------------------------------


def test_artifact_round_trip_scores_identically_and_keeps_metadata(
    artifact: Path, trained: LoadedModel, scorer: TorchScorer
) -> None:
    loaded = TorchScorer.from_path(artifact)
    names, batch = mixed_batch()

    np.testing.assert_array_equal(loaded.score(names, batch).scores, scorer.score(names, batch).scores)
    assert load_artifact(artifact).metadata.to_dict() == trained.metadata.to_dict()
    assert (loaded.version, loaded.kind, loaded.features, loaded.window) == (
        trained.metadata.version,
        "lstm",
        ("value",),
        WINDOW,
    )
    np.testing.assert_array_equal(loaded.baseline_scores(), scorer.baseline_scores())
    weights_hash = hashlib.sha256((artifact / "model.pt").read_bytes()).hexdigest()
    assert loaded.version.endswith(weights_hash[:6])


def test_saving_over_an_artifact_replaces_it_and_leaves_no_temporary_files(
    artifact_copy: Path, trained: LoadedModel
) -> None:
    (artifact_copy / "metadata.json").write_text("{}")

    save_artifact(trained.module, trained.metadata, artifact_copy)

    assert load_artifact(artifact_copy).metadata.version == trained.metadata.version
    assert sorted(p.name for p in artifact_copy.parent.iterdir()) == ["damaged"]


class Payload:
    """Unpickling this runs a shell command: what an attacker would put in a model file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("writer", ["plain pickle", "torch.save"])
def test_a_malicious_model_file_is_refused_without_running_it(artifact_copy: Path, tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    weights = artifact_copy / "model.pt"
    if writer == "plain pickle":
        weights.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    else:
        torch.save({"encoder.weight_ih_l0": Payload(marker)}, weights)

    with pytest.raises(ModelError, match=re.escape(str(artifact_copy))) as raised:
        load_artifact(artifact_copy)

    assert not marker.exists()
    assert "refused by the safe loader" in str(raised.value)
    assert "weights_only` set to `False`" not in str(raised.value)


def break_json(text: str) -> str:
    return text[: len(text) // 2]


def edit_metadata(**changes: object) -> Callable[[str], str]:
    def edit(text: str) -> str:
        return json.dumps({**json.loads(text), **changes})

    return edit


def drop_key(key: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        return json.dumps({k: v for k, v in json.loads(text).items() if k != key})

    return edit


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (break_json, "not valid JSON"),
        (drop_key("window"), "missing key 'window'"),
        (edit_metadata(format_version=2), "format_version must be 1"),
        (edit_metadata(kind="transformer"), "unknown model kind 'transformer'"),
        (edit_metadata(hidden=17), "does not fit the sizes"),
        (edit_metadata(n_features=2), "n_features is 2"),
        (
            edit_metadata(normalisation={"default": {"mean": [0.0]}, "series": {}}),
            "normalisation.default.std",
        ),
    ],
)
def test_corrupt_metadata_is_a_model_error_naming_the_path(
    artifact_copy: Path, edit: Callable[[str], str], complaint: str
) -> None:
    metadata = artifact_copy / "metadata.json"
    metadata.write_text(edit(metadata.read_text()))

    with pytest.raises(ModelError, match=re.escape(complaint)) as raised:
        load_artifact(artifact_copy)

    assert str(artifact_copy) in str(raised.value)


@pytest.mark.parametrize("missing", ["metadata.json", "model.pt", "the directory"])
def test_missing_files_are_a_model_error_naming_the_path(artifact_copy: Path, missing: str) -> None:
    if missing == "the directory":
        shutil.rmtree(artifact_copy)
    else:
        (artifact_copy / missing).unlink()

    with pytest.raises(ModelError, match=re.escape(str(artifact_copy))):
        TorchScorer.from_path(artifact_copy)


# --- helpers ----------------------------------------------------------------------------------------


class ZeroModel(nn.Module):
    """Reconstructs every window as zeros."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def replace_normalisation(metadata: ModelMetadata, normalisation: Normalisation) -> ModelMetadata:
    return dataclasses.replace(metadata, normalisation=normalisation)


def two_feature_scorer(metadata: ModelMetadata) -> TorchScorer:
    """An untrained two-feature model: enough to check the shape and the reduction of the scores."""
    torch.manual_seed(0)
    model = build_model("lstm", ModelShape(metadata.window, 2, 8, 4, 1)).eval()
    stats = FeatureStats(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    two = dataclasses.replace(
        metadata,
        features=("cpu", "mem"),
        normalisation=Normalisation(stats, {"a": stats}),
        hidden=8,
        latent=4,
    )
    return TorchScorer(LoadedModel(model, two))
