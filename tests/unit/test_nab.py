"""monitor.evaluation.nab against NAB's own numbers for a published detector, plus the sweep against brute force."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from monitor.evaluation import nab
from monitor.training.datasets import parse_csv_timestamp

NAB_DEV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab-dev"
REFERENCE = NAB_DEV / "reference"
STANDARD = nab.Profile("standard", 1.0, 0.11, 1.0)


def _reference() -> tuple[list[nab.Labelled], list[np.ndarray]]:
    limits = json.loads((NAB_DEV / "combined_windows.json").read_text())
    files, scores = [], []
    for name in sorted(limits):
        with (REFERENCE / "numenta" / name).open(newline="") as f:
            rows = list(csv.DictReader(f))
        ts = np.array([parse_csv_timestamp(r["timestamp"]) for r in rows])
        windows = [(parse_csv_timestamp(a), parse_csv_timestamp(b)) for a, b in limits[name]]
        files.append(nab.Labelled.from_times(name, ts, windows))
        scores.append(np.array([float(r["anomaly_score"]) for r in rows]))
    return files, scores


@pytest.fixture(scope="module")
def reference() -> tuple[list[nab.Labelled], list[np.ndarray]]:
    return _reference()


def test_every_file_and_profile_matches_nab_to_1e9(reference):
    files, scores = reference
    expected = json.loads((REFERENCE / "numenta_expected_scores.json").read_text())
    profiles = nab.load_profiles(NAB_DEV / "profiles.json")
    assert {p.name for p in profiles} == set(expected)
    checked = 0
    for profile in profiles:
        for labelled, file_scores in zip(files, scores, strict=True):
            want = expected[profile.name][labelled.name]
            got = nab.score_detections(labelled, file_scores >= want["threshold"], profile)
            assert got.raw == pytest.approx(want["score"], abs=1e-9), (profile.name, labelled.name)
            assert (got.tp, got.fp, got.fn, got.tn) == (want["tp"], want["fp"], want["fn"], want["tn"])
            checked += 1
    assert checked == 3 * 18


def test_normalised_totals_match_the_published_subset_numbers(reference):
    files, scores = reference
    windows = sum(len(f.windows) for f in files)
    assert windows == 25
    published = {"standard": 58.13, "reward_low_FP_rate": 47.96, "reward_low_FN_rate": 64.09}
    for profile in nab.load_profiles(NAB_DEV / "profiles.json"):
        raw = sum(nab.score_detections(f, s >= 0.543099145074, profile).raw for f, s in zip(files, scores, strict=True))
        assert nab.normalised(raw, windows, profile) == pytest.approx(published[profile.name], abs=0.005)


def test_the_sweep_finds_the_best_threshold_by_brute_force():
    rng = np.random.default_rng(3)
    ts = np.arange(400.0)
    files = [
        nab.Labelled.from_times("a", ts, [(150.0, 189.0), (300.0, 339.0)]),
        nab.Labelled.from_times("b", ts, []),
    ]
    scores = [rng.random(400).round(2) for _ in files]
    scores[0][160:170] += 0.5
    threshold, best = nab.sweep(files, scores, STANDARD)

    def total(t: float) -> float:
        return sum(nab.score_detections(f, s >= t, STANDARD).raw for f, s in zip(files, scores, strict=True))

    brute = max([total(np.inf)] + [total(t) for t in np.unique(np.concatenate(scores))])
    assert best == pytest.approx(brute, abs=1e-12)
    assert total(threshold) == pytest.approx(best, abs=1e-12)


def test_probation_windows_and_sigmoid_follow_nab():
    assert nab.probationary_rows(4032) == 604 and nab.probationary_rows(22695) == 750
    assert float(nab.scaled_sigmoid(np.array(-1.0))) == pytest.approx(0.98661, abs=1e-5)
    assert float(nab.scaled_sigmoid(np.array(0.0))) == 0.0
    assert float(nab.scaled_sigmoid(np.array(3.0))) == -1.0
    labelled = nab.Labelled.from_times("f", np.arange(1000.0), [(200.0, 299.0)])
    assert labelled.windows == ((200, 299),)
    at_start = np.zeros(1000, bool)
    at_start[200] = True
    perfect = nab.score_detections(labelled, at_start, STANDARD)
    assert perfect.raw == pytest.approx(1.0) and perfect.detected == 1
    assert nab.normalised(perfect.raw, 1, STANDARD) == pytest.approx(100.0)
    assert nab.normalised(nab.score_detections(labelled, np.zeros(1000, bool), STANDARD).raw, 1, STANDARD) == 0.0
    in_probation = np.zeros(1000, bool)
    in_probation[:150] = True
    assert nab.score_detections(labelled, in_probation, STANDARD).fp == 0
