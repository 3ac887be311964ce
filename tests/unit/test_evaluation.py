"""monitor evaluate on tiny synthetic corpora, in NAB's layout and as labelled CSV files (SKAB's layout):
output files, causality, alerts, tables, and input errors that name the file, column and value."""

from __future__ import annotations

import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from monitor.cli import main
from monitor.config import DetectorConfig, parse_config
from monitor.engine.scoring import Scores
from monitor.errors import InputError
from monitor.evaluation.corpus import load_corpus
from monitor.evaluation.evaluate import evaluate
from monitor.evaluation.labelled import CsvLayout
from monitor.evaluation.replay import _squash_to_bar, replay, train_scorer
from monitor.records import Verdict

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
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "alert", "active"]
    assert len(rows) == ROWS and rows[0]["timestamp"] == stamp(0)
    scores = np.array([float(r["anomaly_score"]) for r in rows])
    alerts = np.array([r["alert"] for r in rows])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert set(alerts) <= {"0", "1"}
    assert alerts[SPIKE] == "1", "the injected spike's row must alert"
    assert scores[SPIKE] > 0.5, "an alert row's anomaly_score is above the threshold's 0.5"
    assert rows[SPIKE]["active"] == "1" and rows[SPIKE - 1]["active"] == "0"
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
        scores.append(replay(detector, file, train_scorer(detector, [file])))
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


FEATURES = ("a", "b", "c")
FAULT = 320


def write_labelled(folder: Path, name: str = "1.csv", rows: int = ROWS) -> Path:
    """SKAB's layout: `;`, datetime, three sine features, anomaly, changepoint; feature b jumps at FAULT."""
    rng = np.random.default_rng(5)
    t = np.arange(rows)[:, None]
    table = 5 + np.sin(2 * np.pi * (t + 7 * np.arange(3)) / 40) + 0.05 * rng.standard_normal((rows, 3))
    table[FAULT:, 1] += 6.0
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["datetime", *FEATURES, "anomaly", "changepoint"])
        for i, row in enumerate(table):
            writer.writerow([stamp(i), *(f"{v:.5f}" for v in row), f"{float(i >= FAULT):.1f}", "0.0"])
    return folder / name


def test_a_labelled_csv_folder_trains_each_file_on_its_first_rows_and_scores_the_rest(tmp_path, detector):
    write_labelled(tmp_path / "skab" / "other")
    layout = CsvLayout(train_rows=250)
    result = evaluate(detector, tmp_path / "skab", tmp_path / "out", layout="auto", csv_layout=layout)
    (replayed,) = result.replays
    assert replayed.file.features == FEATURES and replayed.file.name == "other/1.csv"
    with (tmp_path / "out" / "other" / "1.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["datetime", *FEATURES, "anomaly", "anomaly_score", "alert", "active"]
    assert len(rows) == ROWS - 250 and rows[0]["datetime"] == stamp(250)
    active = np.array([r["active"] == "1" for r in rows])
    assert active[FAULT - 250 + 5 :].all(), "the lasting jump keeps the alert open"
    assert not active[: FAULT - 250].any()
    report = result.report()
    assert report.startswith("outliers") and "other/1.csv" in report and "1/1" in report


def test_the_cli_evaluates_labelled_csv_files_with_other_columns(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text(
        "when,x,y,bad\n" + "".join(f"{stamp(i)},{np.sin(i / 5):.4f},{i % 7},{i >= 300:d}\n" for i in range(ROWS))
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"detectors": [DETECTOR]}))
    args = ["evaluate", str(path), "--out", str(tmp_path / "out"), "--config", str(config), "--train-rows", "200"]
    labelled = ["--separator", ",", "--time", "when", "--label", "bad", "--drop", "", "--plots"]
    assert main(args + labelled) == 0
    assert "data.csv" in capsys.readouterr().out
    assert (tmp_path / "out" / "data.png").stat().st_size > 10_000
    with (tmp_path / "out" / "data.csv").open(newline="") as f:
        assert next(csv.reader(f)) == ["when", "x", "y", "bad", "anomaly_score", "alert", "active"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda text: text.replace("datetime", "time", 1), "no column 'datetime'"),
        (lambda text: text.replace(";0.0;0.0", ";2.0;0.0", 1), "column 'anomaly': a label must be 0 or 1, got '2.0'"),
        (lambda text: text.replace(";0.0;0.0", ";x;0.0", 1), "column 'anomaly': not a finite number"),
    ],
)
def test_bad_labelled_csv_is_an_input_error_naming_column_and_value(tmp_path, detector, change, message):
    path = write_labelled(tmp_path)
    path.write_text(change(path.read_text()))
    with pytest.raises(InputError, match=re.escape(message)):
        load_corpus(path, csv_layout=CsvLayout(train_rows=200))


def test_labelled_csv_needs_train_rows_and_nab_refuses_them(tmp_path):
    with pytest.raises(InputError, match="--train-rows N"):
        load_corpus(write_labelled(tmp_path / "csv"))
    with pytest.raises(InputError, match="probationary rows"):
        load_corpus(write_corpus(tmp_path / "nab", values()), csv_layout=CsvLayout(train_rows=10))


def test_configured_features_pick_columns_and_must_exist(tmp_path):
    path = write_labelled(tmp_path)
    (file,) = load_corpus(path, csv_layout=CsvLayout(train_rows=200), features=("c", "a"))
    assert file.features == ("c", "a") and file.values.shape == (ROWS, 2)
    with pytest.raises(InputError, match="no column 'disk'"):
        load_corpus(path, csv_layout=CsvLayout(train_rows=200), features=("a", "disk"))


@pytest.fixture
def four_files(tmp_path) -> Path:
    """A NAB-layout corpus of four files of one generator, each with the spike at SPIKE."""
    corpus = write_corpus(tmp_path / "corpus", values())
    data = corpus / "data" / "synthetic"
    for n in range(1, 4):
        with (data / f"other{n}.csv").open("w", newline="") as f:
            rows = ([stamp(i), f"{v:.6f}"] for i, v in enumerate(values(n)))
            csv.writer(f).writerows([["timestamp", "value"], *rows])
    return corpus


@pytest.fixture
def trained_on(monkeypatch) -> list[set[str]]:
    """The series of each model `evaluate` trains, in order."""
    import monitor.evaluation.evaluate as evaluation

    trained: list[set[str]] = []

    def recording(detector, files, threads=1):
        trained.append({f.series for f in files})
        return train_scorer(detector, files, threads)

    monkeypatch.setattr(evaluation, "train_scorer", recording)
    return trained


def test_the_fleet_protocol_scores_each_file_with_a_model_trained_without_it(
    tmp_path, detector, four_files, trained_on
):
    corpus = four_files
    result = evaluate(detector, corpus, tmp_path / "out", fleet=2)

    names = [r.file.series for r in result.replays]
    assert len(trained_on) == 2 and all(len(seen) == 2 for seen in trained_on)
    for n, name in enumerate(names):
        assert name not in trained_on[n % 2], "a fold's files are never in its model's training data"
    alerted = {r.file.series: np.flatnonzero(r.alert).tolist() for r in result.replays}
    assert all(r.alert[SPIKE] for r in result.replays), f"series the model never saw alert on the spike: {alerted}"
    assert re.search(r"false alerts: \d+ firing outside labelled anomalies", result.report())
    with pytest.raises(InputError, match="--fleet 5: need 2 to 4 folds"):
        evaluate(detector, corpus, tmp_path / "out", fleet=5)


def test_the_shared_protocol_scores_every_file_with_one_model_trained_on_all(
    tmp_path, detector, four_files, trained_on
):
    result = evaluate(detector, four_files, tmp_path / "out", shared=True)

    assert trained_on == [{r.file.series for r in result.replays}], "one model, trained once, on every file"
    alerted = {r.file.series: np.flatnonzero(r.alert).tolist() for r in result.replays}
    assert all(r.alert[SPIKE] for r in result.replays), f"every file alerts on its spike: {alerted}"
    with pytest.raises(InputError, match="two protocols"):
        evaluate(detector, four_files, tmp_path / "out", fleet=2, shared=True)


def test_anomaly_score_within_the_cooldown_is_taken_against_the_critical_bar():
    """After a resolve the daemon pages only at `critical_ratio` x threshold for `cooldown` windows; the
    score the scoreboard sweeps must cross 0.5 exactly where the daemon would page there too."""

    def anomaly(score: float, cooling: bool) -> float:
        verdict = Verdict("d", "s", 0.0, 0.0, score, 1.0, score >= 1.0, False, {}, {}, cooling=cooling)
        return _squash_to_bar(verdict, critical_ratio=2.0)

    assert anomaly(1.5, cooling=True) < 0.5 < anomaly(3.0, cooling=True)  # 1.5 x: no page in it; 3 x: a page
    assert anomaly(1.5, cooling=False) == pytest.approx(1.5 / 2.5)  # after it: against the threshold again
    assert anomaly(3.0, cooling=False) == pytest.approx(0.75)


class NewestValueScorer:
    """Scores a window by its newest value, so the test writes the scores themselves."""

    version, kind, features, window = "newest-1", "newest", ("value",), DETECTOR["window"]

    def score(self, series, batch, start=None, end=None) -> Scores:
        newest = batch[:, -1, :]
        return Scores(scores=newest.sum(axis=1), feature_errors=newest)

    def baseline_scores(self) -> np.ndarray:
        return np.linspace(0.9, 1.1, 64)


def test_anomaly_score_reaches_the_bar_exactly_where_an_alert_fires(tmp_path):
    """The scoreboard sweeps `anomaly_score`, and 0.5 must be where the daemon pages: a grazing run that
    ends before `confirm_after`, a window in the cooldown under `critical_ratio` x threshold and a window
    settled after a larger peak are all above their threshold but page no one."""
    rng = np.random.default_rng(0)
    scores = 1.0 + 0.02 * rng.standard_normal(ROWS)
    scores[150:154] += 0.3  # grazes the threshold, ends before it is confirmed
    scores[200:230] += 0.3  # the same, confirmed after 8 windows
    scores[260] += 10.0  # clearly over: fires at once, then settles above the threshold
    scores[261:275] += 0.5
    scores[330] += 0.6  # over the threshold in the cooldown, under the critical bar
    [file] = load_corpus(write_corpus(tmp_path, scores))
    settings = {"smoothing": 1, "warmup": 4, "k": 4.0, "settle": 0.2, "hold": 1.0}
    alerting = {"confirm_after": 8, "confirm_ratio": 1.5, "resolve_after": 2, "cooldown": 200}
    detector = parse_config({"detectors": [{**DETECTOR, "threshold": settings, "alerting": alerting}]})
    result = replay(detector.detectors[0], file, NewestValueScorer())

    fired = np.flatnonzero(result.alert).tolist()
    assert fired == [207, 260], "the confirmed graze after 8 windows, the clear spike at once"
    over = np.flatnonzero(result.score > result.threshold)
    unpaged = sorted(set(over.tolist()) - set(fired))
    assert {150, 200, 265, 330} <= set(unpaged), "runs over the threshold that fired no alert there"
    assert (result.anomaly_score[unpaged] < 0.5).all()
    assert (result.anomaly_score[fired] >= 0.5).all()
    assert np.flatnonzero(result.anomaly_score >= 0.5).tolist() == fired
    assert result.anomaly_score[265] > result.anomaly_score[329], "settled: still above the normal windows below"
