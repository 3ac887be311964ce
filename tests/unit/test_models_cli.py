"""`monitor train` and `monitor models` on real files: kind and option overrides, exclusions, the store,
the training report, rolling back, and the device check."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from monitor.cli import main
from monitor.errors import ModelError
from monitor.models.store import CURRENT_FILE, resolve, versions
from monitor.records import Point, encode_point, format_ts

from .seasonal_data import seasonal

T0 = 1.7e9
INCIDENT = (T0 + 60.0 * 100, T0 + 60.0 * 130)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A config, a NAB-style CSV of one series and a JSON-lines file of two."""
    detector = {
        "name": "default",
        "window": 16,
        "stride": 2,
        "model": {"path": "store", "hidden": 16, "latent": 8},
        "training": {"epochs": 3, "learning_rate": 0.01},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"detectors": [detector]}))
    with (tmp_path / "cpu.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "value"])
        for i, (value,) in enumerate(seasonal("web-01/cpu", 0, 240)):
            writer.writerow([f"2023-11-14 {22 + (i // 60) % 2:02d}:{i % 60:02d}:00", value])
    points = [
        Point(name, T0 + 60.0 * i, {"value": float(v)})
        for name in ("web-01/cpu", "web-02/cpu")
        for i, (v,) in enumerate(seasonal(name, 0, 240))
    ]
    (tmp_path / "points.jsonl").write_bytes(b"".join(encode_point(p) + b"\n" for p in points))
    return tmp_path


def train(files: Path, *args: str) -> int:
    return main(["--config", str(files / "config.yaml"), "train", "--no-progress", *args])


def test_train_from_csv_writes_a_version_with_its_report(files: Path, capsys: pytest.CaptureFixture) -> None:
    assert train(files, "--input", str(files / "cpu.csv")) == 0

    version = resolve(files / "store")
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["kind"] == "lstm" and list(metadata["normalisation"]["series"]) == ["cpu"]
    assert (
        (version / "loss.png").read_bytes()[:8]
        == (version / "validation_errors.png").read_bytes()[:8]
        == b"\x89PNG\r\n\x1a\n"
    )
    report = (version / "report.md").read_text()
    assert "suggested threshold: **" in report and f"file {files / 'cpu.csv'}" in report
    assert len(metadata["training"]["val_losses"]) == metadata["training"]["epochs_run"]
    assert f"saved {version.name}" in capsys.readouterr().out


def test_the_command_line_overrides_kind_and_options_and_records_exclusions(files: Path) -> None:
    incident = "/".join(str(t) for t in INCIDENT)
    args = ["--input", str(files / "points.jsonl"), "--kind", "dense", "--denoising", "--sparse", "--seed", "3"]

    assert train(files, *args, "--exclude", incident) == 0

    metadata = json.loads((resolve(files / "store") / "metadata.json").read_text())
    options = metadata["training"]["options"]
    assert metadata["kind"] == "dense" and metadata["version"].startswith("dense-")
    assert (options["denoising"], options["noise"], options["sparse"], options["seed"]) == ("gaussian", 0.1, 1e-3, 3)
    assert metadata["data_range"]["excluded"] == [list(INCIDENT)]
    assert metadata["data_range"]["points"] == 2 * (240 - 30), "the excluded half hour of both series is left out"
    report = (resolve(files / "store") / "report.md").read_text()
    assert f"excluded: {format_ts(INCIDENT[0])} to {format_ts(INCIDENT[1])}" in report


def test_every_kind_trains_through_the_same_command(files: Path) -> None:
    for kind in ("lstm", "dense", "conv", "vae"):
        assert train(files, "--input", str(files / "points.jsonl"), "--kind", kind, "--epochs", "1") == 0
        assert resolve(files / "store").name.startswith(f"{kind}-")
    assert [v.split("-")[0] for v in versions(files / "store")] == ["lstm", "dense", "conv", "vae"]


def test_models_lists_versions_and_rolls_back(files: Path, capsys: pytest.CaptureFixture) -> None:
    for kind in ("dense", "conv"):
        assert train(files, "--input", str(files / "points.jsonl"), "--kind", kind, "--epochs", "1") == 0
    dense, conv = versions(files / "store")
    capsys.readouterr()
    config = ["--config", str(files / "config.yaml")]

    assert main([*config, "models"]) == 0
    assert capsys.readouterr().out == f"  {dense}\n* {conv}\n"
    assert main([*config, "models", "--use", dense]) == 0
    assert (files / "store" / CURRENT_FILE).read_text().strip() == dense
    assert main([*config, "models", "--use", "nope-1"]) == 1
    assert (files / "store" / CURRENT_FILE).read_text().strip() == dense


def test_nll_on_a_kind_without_likelihood_is_refused(files: Path, capsys: pytest.CaptureFixture) -> None:
    assert train(files, "--input", str(files / "points.jsonl"), "--kind", "dense", "--score", "nll") == 1
    assert "needs a model kind with a likelihood (vae)" in capsys.readouterr().err


def test_device_cuda_trains_there_or_says_clearly_that_it_cannot(files: Path, capsys: pytest.CaptureFixture) -> None:
    code = train(files, "--input", str(files / "points.jsonl"), "--device", "cuda", "--epochs", "1")
    if torch.cuda.is_available():
        assert code == 0
        assert (
            json.loads((resolve(files / "store") / "metadata.json").read_text())["training"]["options"]["device"]
            == "cuda"
        )
        return
    assert code == 1
    err = capsys.readouterr().err
    assert "--device cuda: CUDA is not available on this machine" in err and "--device cpu" in err
    assert not (files / "store").exists(), "nothing is read or written before the device is known to work"


def test_scoring_device_cuda_serves_there_or_stops_the_daemon_with_one_line(
    files: Path, capsys: pytest.CaptureFixture
) -> None:
    assert train(files, "--input", str(files / "points.jsonl")) == 0
    config = yaml.safe_load((files / "config.yaml").read_text())
    config["scoring"] = {"device": "cuda"}
    (files / "cuda.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    code = main(
        ["--config", str(files / "cuda.yaml"), "--log-level", "WARNING", "run", "--input", str(files / "points.jsonl")]
    )
    err = capsys.readouterr().err
    if torch.cuda.is_available():
        assert code == 0 and "summary:" in err
        return
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "scoring.device cuda: CUDA is not available on this machine" in lines[0]
    assert "scoring.device: cpu" in lines[0]


def test_scores_on_cuda_equal_the_cpu_scores(files: Path) -> None:
    from monitor.models import TorchScorer

    assert train(files, "--input", str(files / "points.jsonl")) == 0
    windows = np.random.default_rng(0).normal(size=(300, 16, 1))
    series = ["web-01/cpu"] * len(windows)
    cpu = TorchScorer.from_path(files / "store", max_batch=64)
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match=r"scoring\.device cuda: CUDA is not available"):
            TorchScorer.from_path(files / "store", max_batch=64, device="cuda")
        return
    cuda = TorchScorer.from_path(files / "store", max_batch=64, device="cuda")
    assert cuda.device == "cuda"
    np.testing.assert_allclose(cuda.score(series, windows).scores, cpu.score(series, windows).scores, rtol=1e-5)
