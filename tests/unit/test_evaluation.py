"""monitor evaluate on a tiny synthetic corpus in NAB's layout: output files, causality, alerts, tables."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from monitor.cli import main
from monitor.config import DetectorConfig, parse_config
from monitor.evaluation.corpus import load_corpus
from monitor.evaluation.evaluate import evaluate
from monitor.evaluation.replay import replay, train_scorer

ROWS = 400
SPIKE = 300
T0 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
DETECTOR = {
    "name": "tiny",
    "window": 8,
    "stride": 1,
    "model": {"hidden": 4, "latent": 2},
    "training": {"epochs": 3, "patience": 1, "batch_size": 16},
    "threshold": {"warmup": 4},
}


def stamp(i: int) -> str:
    return datetime.fromtimestamp(T0 + 300 * i, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    series = 10 + np.sin(np.arange(ROWS) * 2 * np.pi / 48) + 0.05 * rng.standard_normal(ROWS)
    series[SPIKE] += 8.0
    return series


def write_corpus(root: Path, series: np.ndarray) -> Path:
    data = root / "data" / "synthetic"
    data.mkdir(parents=True, exist_ok=True)
    with (data / "spiky.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "value"])
        writer.writerows([stamp(i), f"{v:.6f}"] for i, v in enumerate(series))
    windows = {"synthetic/spiky.csv": [[stamp(SPIKE - 20) + ".000000", stamp(SPIKE + 20) + ".000000"]]}
    (root / "combined_windows.json").write_text(json.dumps(windows))
    return root


@pytest.fixture(scope="module")
def detector() -> DetectorConfig:
    return parse_config({"detectors": [DETECTOR]}).detectors[0]


def test_evaluate_writes_one_csv_per_file_with_scores_and_alerts(tmp_path, detector):
    corpus = write_corpus(tmp_path / "corpus", values())
    result = evaluate(detector, corpus, tmp_path / "out")
    with (tmp_path / "out" / "synthetic" / "spiky.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "alert"]
    assert len(rows) == ROWS and rows[0]["timestamp"] == stamp(0)
    scores = np.array([float(r["anomaly_score"]) for r in rows])
    alerts = np.array([r["alert"] for r in rows])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert set(alerts) <= {"0", "1"}
    assert (scores[alerts == "1"] > 0).all(), "an alert row must have a positive anomaly_score"
    assert scores[:7].max() == 0, "no score before the first full window"
    report = result.report()
    assert "deployed" in report and "scoreboard" in report and "synthetic" in report


def test_a_rows_score_does_not_depend_on_later_rows(tmp_path, detector):
    """Causality: change everything after row i and the scores up to i stay the same."""
    cut = 200
    original = values()
    changed = original.copy()
    changed[cut + 1 :] = np.random.default_rng(9).normal(50, 10, ROWS - cut - 1)
    scores = []
    for n, series in enumerate((original, changed)):
        file = load_corpus(write_corpus(tmp_path / str(n), series))[0]
        scores.append(replay(detector, file, train_scorer(detector, file)))
    assert np.array_equal(scores[0].anomaly_score[: cut + 1], scores[1].anomaly_score[: cut + 1])
    assert np.array_equal(scores[0].alert[: cut + 1], scores[1].alert[: cut + 1])
    assert not np.array_equal(scores[0].anomaly_score, scores[1].anomaly_score)


def test_a_single_csv_finds_its_windows_in_the_nab_layout(tmp_path):
    corpus = write_corpus(tmp_path, values())
    (file,) = load_corpus(corpus / "data" / "synthetic" / "spiky.csv")
    assert file.name == "synthetic/spiky.csv" and file.labelled.category == "synthetic"
    assert file.labelled.windows == ((SPIKE - 20, SPIKE + 20),)


def test_the_cli_prints_both_tables_and_writes_plots(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", values())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"detectors": [DETECTOR]}))
    out = tmp_path / "out"
    assert main(["evaluate", str(corpus), "--out", str(out), "--config", str(config), "--plots"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("deployed") and "\nscoreboard" in printed and "overall" in printed
    assert (out / "synthetic" / "spiky.png").stat().st_size > 10_000


def test_a_folder_without_data_is_an_input_error(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"detectors": [DETECTOR]}))
    assert main(["evaluate", str(tmp_path), "--out", str(tmp_path / "out"), "--config", str(config)]) == 1
    assert "data/<category>/<file>.csv" in capsys.readouterr().err
