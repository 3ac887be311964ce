"""The model-related keys of config.yaml: kinds, score methods, training options, selectors, entities."""

from __future__ import annotations

import pytest

from monitor.config import parse_config
from monitor.errors import ConfigError


def detector(**fields: object):
    [parsed] = parse_config({"detectors": [{"name": "d", **fields}]}, environ={}).detectors
    return parsed


def error(**fields: object) -> str:
    with pytest.raises(ConfigError) as raised:
        detector(**fields)
    return str(raised.value)


def test_selector_labels_and_entity_label_are_read() -> None:
    parsed = detector(series="web-*", labels={"dc": "eu1", "tier": "web"}, entity_label="host")
    assert parsed.settings.labels == (("dc", "eu1"), ("tier", "web"))
    assert parsed.settings.entity_label == "host"
    assert detector().settings.labels == () and detector().settings.entity_label is None


def test_every_kind_and_option_is_accepted() -> None:
    for kind in ("lstm", "dense", "conv", "vae"):
        assert detector(model={"kind": kind}).model.kind == kind
    parsed = detector(
        model={"kind": "vae", "score": "nll", "online_warmup": 0, "reload_interval": 0},
        training={"denoising": "mask", "noise": 0.3, "sparse": 0.01, "kl_weight": 1.0},
    )
    assert (parsed.model.score, parsed.model.online_warmup, parsed.model.reload_interval) == ("nll", 0, 0.0)
    assert (parsed.training.denoising, parsed.training.noise) == ("mask", 0.3)
    assert (parsed.training.sparse, parsed.training.kl_weight) == (0.01, 1.0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": {"kind": "transformer"}}, "detectors[0].model.kind: must be one of lstm, dense, conv, vae"),
        ({"model": {"score": "nll"}}, "detectors[0].model.score: nll needs a kind with a likelihood (vae)"),
        ({"training": {"denoising": False}}, "detectors[0].training.denoising: must be a non-empty string"),
        ({"training": {"denoising": "mask", "noise": 1.0}}, "masking probability must be below 1"),
        ({"labels": {"dc": 1}}, "detectors[0].labels: must be a mapping of label names to strings"),
        ({"model": {"reload_interval": -1}}, "detectors[0].model.reload_interval: must be a number"),
        ({"model": {"score_tail": 0, "hide_scored": True}}, "detectors[0].model.hide_scored: needs a score_tail"),
    ],
)
def test_bad_model_settings_are_one_line_naming_the_key(fields: dict, message: str) -> None:
    text = error(**fields)
    assert message in text and "\n" not in text


def test_the_scored_steps_are_hidden_unless_the_whole_window_is_scored() -> None:
    assert detector().model.hide_scored
    assert not detector(model={"hide_scored": False}).model.hide_scored
    assert not detector(model={"score_tail": 0}).model.hide_scored
