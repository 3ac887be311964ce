"""The ONNX Runtime backend scores exactly like the PyTorch model, and refuses what it cannot serve loudly."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from monitor import config as monitor_config
from monitor.config import parse_config
from monitor.errors import ConfigError, ModelError
from monitor.models import LoadedModel, SeriesData, TorchScorer, TrainOptions, save_artifact, train_model
from monitor.models.onnx_backend import BACKENDS
from monitor.service.reload import load_scorer

SERIES = ("web-01/cpu", "web-02/cpu", "db-01/mem")


def history(points: int = 400) -> dict[str, SeriesData]:
    """A daily-looking sine per series with noise: enough for one short epoch of training."""
    rng = np.random.default_rng(3)
    ts = 1_700_000_000.0 + 60.0 * np.arange(points)
    return {
        name: SeriesData(ts, (10 * i + 5 + np.sin(np.arange(points) / (7 + i)) + rng.normal(0, 0.1, points))[:, None])
        for i, name in enumerate(SERIES)
    }


def trained(kind: str, window: int, **options: object) -> LoadedModel:
    base = TrainOptions(kind=kind, window=window, hidden=16, latent=4, epochs=1, max_windows=256)
    model, metadata = train_model(history(), ["value"], dataclasses.replace(base, **options), progress=False)
    return LoadedModel(model, metadata)


def windows(count: int, window: int) -> tuple[list[str], np.ndarray]:
    """Raw windows of the training series (and one unseen series), some with a spike."""
    rng = np.random.default_rng(count)
    names = [(*SERIES, "new-01/cpu")[i % 4] for i in range(count)]
    batch = 10 + rng.normal(0, 1, (count, window, 1)) + np.sin(np.arange(window) / 5)[None, :, None]
    batch[::5, -3, 0] += 8
    return names, batch


@pytest.mark.parametrize("window", [32, 64])
@pytest.mark.parametrize("kind", ["lstm", "dense", "conv", "vae"])
@pytest.mark.parametrize("hidden", [False, True], ids=["whole-window", "hide-scored"])
def test_onnx_scores_equal_the_pytorch_model(kind: str, window: int, hidden: bool) -> None:
    loaded = trained(kind, window, **({"score_tail": 1, "hide_scored": True} if hidden else {}))
    assert loaded.metadata.hidden_steps == hidden
    reference, onnx = TorchScorer(loaded), TorchScorer(loaded, threads=1, backend="onnx")
    assert onnx.backend == "onnx"
    for count in (1, 7, 300):  # one window, an odd batch, and more than max_batch (two forward passes)
        names, batch = windows(count, window)
        expected, got = reference.score(names, batch), onnx.score(names, batch)
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.feature_errors, expected.feature_errors, rtol=1e-5, atol=1e-5)


def test_a_vae_scored_by_nll_falls_back_to_torch_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    loaded = trained("vae", 32, score_method="nll")
    names, batch = windows(7, 32)

    with caplog.at_level(logging.WARNING, logger="monitor.models.scorer"):
        scorer = TorchScorer(loaded, backend="onnx")

    assert scorer.backend == "torch"
    [record] = caplog.records
    assert "onnx_fallback" in record.getMessage() and "kind=vae" in record.getMessage()
    assert "nll" in record.getMessage()
    np.testing.assert_array_equal(scorer.score(names, batch).scores, TorchScorer(loaded).score(names, batch).scores)


def test_an_unknown_backend_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="unknown scoring backend 'tensorrt'"):
        TorchScorer(trained("dense", 32), backend="tensorrt")


def test_the_config_selects_the_backend_and_the_daemon_loads_it(tmp_path: Path) -> None:
    loaded = trained("lstm", 32)
    path = save_artifact(loaded.module, loaded.metadata, tmp_path / "model")
    doc = {"scoring": {"backend": "onnx"}, "detectors": [{"window": 32, "model": {"path": str(path)}}]}
    config = parse_config(doc, environ={})

    scorer = load_scorer(config.detectors[0], config.scoring_threads, None, config.scoring_backend)

    assert config.scoring_backend == "onnx" and scorer.backend == "onnx"
    assert parse_config({}, environ={}).scoring_backend == "torch"
    with pytest.raises(ConfigError, match=r"scoring\.backend"):
        parse_config({"scoring": {"backend": "tensorrt"}}, environ={})


def test_the_config_lists_exactly_the_backends() -> None:
    assert monitor_config.SCORING_BACKENDS == BACKENDS
