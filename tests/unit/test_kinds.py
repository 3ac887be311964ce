"""Every model kind and training option learns, scores spikes high, and round-trips through an artifact.

Each case trains a tiny model once (well under a few seconds on two cores) on the seasonal series of
`seasonal_data`. The plain LSTM is covered the same way in test_models.py; here it runs with the
denoising and sparse options instead.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from monitor.config import model as model_config
from monitor.errors import ModelError
from monitor.models import (
    MODEL_KINDS,
    LoadedModel,
    ModelShape,
    TorchScorer,
    TrainOptions,
    build_model,
    load_artifact,
    save_artifact,
    seasons,
    train_model,
)
from monitor.models.device import resolve_device
from monitor.models.fitting import FitSettings, WeightAverage, corrupt, fit
from monitor.models.inference import reconstruction_scores, traced_errors

from .seasonal_data import SERIES, WINDOW, future_windows, history

BASE = TrainOptions(window=WINDOW, hidden=16, latent=8, epochs=8, batch_size=64, learning_rate=1e-2, patience=3)
CASES = {
    "dense": {"kind": "dense"},
    "conv": {"kind": "conv"},
    "vae": {"kind": "vae"},
    "lstm+denoising+sparse": {"kind": "lstm", "denoising": "gaussian", "sparse": 1e-2},
    "dense+mask": {"kind": "dense", "denoising": "mask", "noise": 0.2},
    "conv+denoising+sparse": {"kind": "conv", "denoising": "gaussian", "noise": 0.2, "sparse": 1e-2},
    "lstm+hide_scored": {"kind": "lstm", "score_tail": 2, "hide_scored": True},
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[TrainOptions, LoadedModel]:
    options = dataclasses.replace(BASE, **CASES[request.param])
    model, metadata = train_model(history(), ["value"], options, progress=False)
    return options, LoadedModel(model, metadata)


def held_out() -> tuple[list[str], np.ndarray]:
    """Windows of every training series taken after its history: what the model scores next."""
    names = [name for name in SERIES for _ in range(20)]
    return names, np.concatenate([future_windows(name, 20) for name in SERIES])


def spiked_and_normal(scorer: TorchScorer) -> tuple[float, np.ndarray]:
    windows = future_windows("web-02/cpu", 40)
    spiked = windows[7].copy()
    spiked[-3, 0] += 6 * SERIES["web-02/cpu"][1]
    normal = scorer.score(["web-02/cpu"] * 40, windows).scores
    return float(scorer.score(["web-02/cpu"], spiked[None]).scores[0]), normal


def test_validation_error_falls_well_below_the_untrained_model(case) -> None:
    options, trained = case
    torch.manual_seed(options.seed)
    untrained = build_model(options.kind, trained.metadata.shape).eval()
    names, batch = held_out()

    error = TorchScorer(trained).score(names, batch).scores.mean()
    untrained_error = TorchScorer(LoadedModel(untrained, trained.metadata)).score(names, batch).scores.mean()

    assert error < 0.2 * untrained_error
    assert trained.metadata.training["val_loss"] < 0.2 * trained.metadata.training["initial_val_loss"]


def test_an_injected_spike_scores_far_above_normal_windows(case) -> None:
    spike, normal = spiked_and_normal(TorchScorer(case[1]))
    assert spike > 10 * np.median(normal)


def test_each_kind_round_trips_through_an_artifact(case, tmp_path: Path) -> None:
    options, trained = case
    path = save_artifact(trained.module, trained.metadata, tmp_path / "artifact")
    names, batch = held_out()

    loaded = load_artifact(path)

    assert type(loaded.module) is type(trained.module)
    assert loaded.metadata.kind == options.kind and re.fullmatch(
        rf"{options.kind}-\d{{8}}-[0-9a-f]{{6}}", loaded.metadata.version
    )
    np.testing.assert_array_equal(
        TorchScorer(loaded).score(names, batch).scores, TorchScorer(trained).score(names, batch).scores
    )
    assert loaded.metadata.training["options"]["denoising"] == options.denoising


def test_the_traced_call_gives_the_eager_scores_exactly(case) -> None:
    """The forward pass and reduction traced into one call (what the daemon scores with) give the numbers
    of the eager reduction that seeded the thresholds at training, at any batch size (traced on 2 rows)."""
    _, trained = case
    meta = trained.metadata
    windows = np.random.default_rng(0).normal(0.0, 1.0, (300, meta.window, meta.n_inputs))
    traced = traced_errors(trained.module, meta.window, meta.n_inputs, meta.score_tail, meta.n_features)
    assert traced is not None and TorchScorer(trained).traced

    one_call = reconstruction_scores(trained.module, windows, meta.score_tail, features=meta.n_features, traced=traced)

    eager = reconstruction_scores(trained.module, windows, meta.score_tail, features=meta.n_features)
    np.testing.assert_array_equal(one_call.feature_errors, eager.feature_errors)


def test_a_model_the_tracer_cannot_follow_is_scored_eagerly(case, monkeypatch) -> None:
    _, trained = case
    names, batch = held_out()
    expected = TorchScorer(trained).score(names, batch).scores

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("not traceable")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    scorer = TorchScorer(trained)

    assert not scorer.traced
    np.testing.assert_array_equal(scorer.score(names, batch).scores, expected)


@pytest.fixture(scope="module")
def vae() -> LoadedModel:
    model, metadata = train_model(
        history(), ["value"], dataclasses.replace(BASE, kind="vae", score_method="nll"), progress=False
    )
    return LoadedModel(model, metadata)


def test_the_vae_nll_score_flags_a_spike_and_is_what_seeds_thresholds(vae: LoadedModel) -> None:
    scorer = TorchScorer(vae)
    spike, normal = spiked_and_normal(scorer)

    assert vae.metadata.score_method == "nll"
    assert (normal >= 0).all(), "nll scores are shifted to stay >= 0 like errors"
    assert spike > 10 * np.median(normal)
    reconstruction = TorchScorer(
        LoadedModel(vae.module, dataclasses.replace(vae.metadata, score_method="reconstruction"))
    )
    assert not np.allclose(reconstruction.score(["web-02/cpu"] * 40, future_windows("web-02/cpu", 40)).scores, normal)


def test_vae_scores_are_deterministic(vae: LoadedModel) -> None:
    names, batch = held_out()
    scorer = TorchScorer(vae)
    np.testing.assert_array_equal(scorer.score(names, batch).scores, scorer.score(names, batch).scores)


@pytest.mark.parametrize("kind", ["lstm", "dense", "conv"])
def test_nll_needs_a_kind_with_a_likelihood(kind: str) -> None:
    with pytest.raises(ModelError, match="needs a model kind with a likelihood"):
        TrainOptions(kind=kind, score_method="nll")


def test_the_config_lists_exactly_the_registered_kinds() -> None:
    assert tuple(MODEL_KINDS) == model_config.MODEL_KINDS
    assert tuple(k for k, cls in MODEL_KINDS.items() if cls.has_likelihood) == model_config.LIKELIHOOD_KINDS
    assert seasons.SETTINGS == model_config.CALENDAR


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_a_hidden_step_does_not_reach_the_model_and_the_step_before_stands_in(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(kind, ModelShape(12, 2, 8, 4, 1, hidden_steps=2)).eval()
    x = torch.randn(3, 12, 2)
    changed = x.clone()
    changed[:, -2:] += 5.0  # only the hidden steps differ
    assert torch.equal(model.visible(x)[:, -2:], x[:, -3:-2].expand(-1, 2, -1))
    assert torch.equal(model.visible(x)[:, :-2], x[:, :-2])
    with torch.no_grad():
        assert torch.equal(model(x), model(changed))
        if model.has_likelihood:  # the nll score compares the prediction with the values it did not see
            assert not torch.equal(model.pointwise_nll(x), model.pointwise_nll(changed))


def test_the_hidden_steps_travel_with_the_artifact_and_older_ones_hide_none(tmp_path: Path) -> None:
    options = dataclasses.replace(BASE, epochs=1, score_tail=1, hide_scored=True)
    model, metadata = train_model(history(), ["value"], options, progress=False)
    assert metadata.hidden_steps == 1 and model.shape.hidden_steps == 1
    save_artifact(model, metadata, tmp_path / "m")
    assert load_artifact(tmp_path / "m").module.shape.hidden_steps == 1
    older = {k: v for k, v in metadata.to_dict().items() if k != "hidden_steps"}
    assert type(metadata).from_dict(older).hidden_steps == 0
    with pytest.raises(ModelError, match="hidden_steps must be an integer from 0 to window - 1"):
        type(metadata).from_dict({**older, "hidden_steps": metadata.window})
    with pytest.raises(ModelError, match="0 < score_tail < window with hide_scored"):
        dataclasses.replace(options, score_tail=0)


def test_dense_widths_follow_the_article_example() -> None:
    model = build_model("dense", ModelShape(window=49, n_features=16, hidden=128, latent=32, layers=2))
    widths = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [(784, 128), (128, 64), (64, 32), (32, 64), (64, 128), (128, 784)]


@pytest.mark.parametrize(("window", "layers"), [(8, 1), (9, 3), (24, 2), (33, 8)])
def test_conv_reconstructs_windows_of_any_length(window: int, layers: int) -> None:
    model = build_model("conv", ModelShape(window=window, n_features=3, hidden=4, latent=2, layers=layers))
    x = torch.randn(5, window, 3)
    assert model(x).shape == x.shape
    assert model.encode(x).shape == (5, 2)


def fit_settings(**changes: object) -> FitSettings:
    return dataclasses.replace(FitSettings(1, 1, 1e-3, 1, 0, "cpu"), **changes)


def test_denoising_corrupts_the_inputs_as_configured_and_reproducibly() -> None:
    windows = torch.ones(200, 24, 2)

    gaussian = corrupt(windows, fit_settings(denoising="gaussian", noise=0.3), torch.Generator().manual_seed(1))
    masked = corrupt(windows, fit_settings(denoising="mask", noise=0.25), torch.Generator().manual_seed(1))
    again = corrupt(windows, fit_settings(denoising="mask", noise=0.25), torch.Generator().manual_seed(1))

    assert (gaussian - windows).std().item() == pytest.approx(0.3, rel=0.05)
    assert (masked == 0).float().mean().item() == pytest.approx(0.25, abs=0.02)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(masked, again)
    assert corrupt(windows, fit_settings(), torch.Generator()) is windows


def test_the_sparse_penalty_shrinks_the_latent_activations() -> None:
    names, batch = held_out()

    def mean_code(sparse: float) -> float:
        options = dataclasses.replace(BASE, kind="dense", sparse=sparse)
        model, metadata = train_model(history(), ["value"], options, progress=False)
        normalised = torch.from_numpy(metadata.normalisation.apply(names, batch))
        with torch.inference_mode():
            return model.encode(normalised).abs().mean().item()

    assert mean_code(0.1) < 0.5 * mean_code(0.0)


def test_the_weight_average_is_bias_corrected() -> None:
    """After weights 1, 2, 3 with decay 0.9: (0.81 × 1 + 0.9 × 2 + 3) / (0.81 + 0.9 + 1), the initial
    weights not counted at all."""
    model = torch.nn.Linear(1, 1)
    average = WeightAverage(model, 0.9)  # type: ignore[arg-type]
    for value in (1.0, 2.0, 3.0):
        torch.nn.init.constant_(model.weight, value)
        average.follow(model)  # type: ignore[arg-type]
    assert average.model.weight.item() == pytest.approx((0.81 + 1.8 + 3.0) / 2.71)


def test_with_ema_training_keeps_the_average_not_the_last_weights() -> None:
    """One optimiser step keeps exactly the stepped weights (no pull back to the random start); two
    steps keep weights that differ from where the second step left them."""
    windows = np.random.default_rng(0).normal(size=(32, WINDOW, 1)).astype(np.float32)

    def trained(ema: float, batch_size: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = build_model("lstm", ModelShape(WINDOW, 1, 8, 4, 1))
        fit(model, windows, windows, fit_settings(batch_size=batch_size, learning_rate=1e-2, ema=ema), progress=False)
        return model.state_dict()

    one_plain, one_average = trained(0.0, 32), trained(0.98, 32)
    two_plain, two_average = trained(0.0, 16), trained(0.98, 16)

    assert all(torch.equal(one_plain[name], one_average[name]) for name in one_plain)
    assert not any(torch.equal(two_plain[name], two_average[name]) for name in two_plain)


def test_cuda_is_used_when_available_and_a_clear_error_otherwise() -> None:
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
        return
    with pytest.raises(ModelError, match=r"--device cuda: CUDA is not available on this machine .*--device cpu"):
        resolve_device("cuda")


def test_an_unknown_device_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="not a torch device name"):
        resolve_device("gpu0")
