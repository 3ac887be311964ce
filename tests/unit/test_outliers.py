"""monitor.evaluation.outliers: SKAB's pooled counts of its published baselines reproduced exactly from their
prediction files, and the event view on small hand-made cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from monitor.evaluation import outliers
from monitor.evaluation.corpus import load_corpus
from monitor.evaluation.labelled import CsvLayout

SKAB_DEV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "skab-dev"
REFERENCE = SKAB_DEV / "reference"
TRAIN_ROWS = 400


@pytest.fixture(scope="module")
def test_rows() -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """Per file (by base name, as the reference files name them): the test rows' times and labels."""
    corpus = load_corpus(SKAB_DEV / "data", csv_layout=CsvLayout(train_rows=TRAIN_ROWS))
    return {Path(f.name).name: (f.timestamps[TRAIN_ROWS:], f.labels[TRAIN_ROWS:]) for f in corpus}


@pytest.mark.parametrize("algorithm", json.loads((REFERENCE / "pooled_scores.json").read_text()))
def test_pooled_counts_of_the_published_baselines_are_reproduced_exactly(test_rows, algorithm):
    with (REFERENCE / f"{algorithm}.csv").open(newline="") as f:
        predicted: dict[tuple[str, str], bool] = {
            (r["file"], r["datetime"]): r["predicted"] == "1" for r in csv.DictReader(f)
        }
    total = outliers.Counts()
    for name, (times, labels) in test_rows.items():
        total += outliers.counts(labels, np.array([predicted.pop((name, t)) for t in times]))
    assert not predicted, "every reference prediction is a test row of a data file"
    want = json.loads((REFERENCE / "pooled_scores.json").read_text())[algorithm]
    assert (total.tp, total.fp, total.fn, total.tn) == (want["tp"], want["fp"], want["fn"], want["tn"])
    assert round(total.f1, 4) == want["f1"]
    assert round(100 * total.far, 2) == want["far_pct"] and round(100 * total.mar, 2) == want["mar_pct"]


def test_the_skab_files_hold_one_labelled_period_each(test_rows):
    assert len(test_rows) == 14
    assert all(len(outliers.runs(labels)) == 1 for _, labels in test_rows.values())


def test_a_period_is_found_only_by_an_alert_that_starts_inside_it():
    labels = np.zeros(20, bool)
    labels[5:10] = labels[14:17] = True
    alerts = np.zeros(20, bool)
    alerts[[2, 7, 8, 17]] = True  # before, inside twice, just after the second period
    found = outliers.events(labels, alerts, ts=np.arange(20) * 2.0)
    assert (found.periods, found.found, found.outside) == (2, 1, 2)
    assert found.delays == [4.0], "the first alert inside, 2 rows of 2 s after the period starts"


def test_scores_follow_skabs_definitions():
    c = outliers.counts(np.array([1, 1, 1, 0, 0, 0, 0]), np.array([1, 1, 0, 1, 0, 0, 0]))
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 3)
    assert c.f1 == pytest.approx(2 / 3) and c.far == pytest.approx(1 / 4) and c.mar == pytest.approx(1 / 3)
