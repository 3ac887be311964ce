"""Tuning bench for `monitor evaluate`: the model's scores are cached, detector variants replayed fast.

Usage: nice .venv/bin/python bench/nab_tune.py VARIANTS.json [--data ../shared/data/nab-dev]
VARIANTS.json maps a name to a detector section (merged over config.yaml's first detector). Each file's
model is trained once per model/training section and its scores are cached under /tmp/nab-cache; the
threshold and alerting sections are then replayed through the real Engine with a scorer that returns the
cached scores in order. Prints the standard-profile deployed and scoreboard scores of every variant.
Never part of the tests.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.config import parse_config  # noqa: E402
from monitor.engine.scoring import Scores  # noqa: E402
from monitor.evaluation.corpus import load_corpus  # noqa: E402
from monitor.evaluation.nab import load_profiles  # noqa: E402
from monitor.evaluation.replay import replay, train_scorer  # noqa: E402
from monitor.evaluation.report import deployed, scoreboard  # noqa: E402

CACHE = Path("/tmp/nab-cache")


class Recorded:
    """A scorer that returns the scores a real one gave for the same sequence of windows."""

    def __init__(self, real, scores=None, baseline=None):
        self.real, self.kind, self.version = real, "recorded", "recorded"
        self.features, self.window = real.features, real.window
        self.scores = [] if scores is None else list(scores)
        self.baseline = real.baseline_scores() if baseline is None else baseline
        self.position = 0

    def score(self, series, batch, start=None, end=None):
        if self.position + len(batch) > len(self.scores):
            result = self.real.score(series, batch, start, end)
            self.scores.extend(result.scores.tolist())
        scores = np.asarray(self.scores[self.position : self.position + len(batch)])
        self.position += len(batch)
        return Scores(scores, scores[:, None])

    def baseline_scores(self):
        return np.asarray(self.baseline)


class _Shape:
    def __init__(self, features, window):
        self.features, self.window = features, window


def detector_for(section: dict) -> object:
    doc = yaml.safe_load((REPO / "config.yaml").read_text())
    base = doc["detectors"][0]
    merged = copy.deepcopy(base)
    for key, value in section.items():
        if isinstance(value, dict):
            merged.setdefault(key, {}).update(value)
        else:
            merged[key] = value
    doc["detectors"] = [merged]
    return parse_config(doc, base_dir=REPO).detectors[0], merged


def scorer_for(detector, merged, file):
    key = json.dumps({k: merged.get(k) for k in ("window", "model", "training", "features")}, sort_keys=True)
    digest = hashlib.sha256((key + file.name).encode()).hexdigest()[:16]
    path = CACHE / f"{digest}.npz"
    if path.exists():
        data = np.load(path)
        return Recorded(
            _Shape(tuple(detector.settings.features), detector.settings.window), data["scores"], data["baseline"]
        ), None
    return Recorded(train_scorer(detector, [file])), path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "nab-dev"))
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)
    corpus = load_corpus(args.data)
    profiles = load_profiles(Path(args.data) / "profiles.json")
    variants = json.loads(Path(args.variants).read_text())
    for name, section in variants.items():
        started = time.perf_counter()
        detector, merged = detector_for(section)
        replays = []
        for file in corpus:
            scorer, save = scorer_for(detector, merged, file)
            replays.append(replay(detector, file, scorer))
            if save is not None:
                np.savez(save, scores=np.asarray(scorer.scores), baseline=scorer.baseline)
        labelled = [r.file.labelled for r in replays]
        dep = deployed(labelled, [r.alert for r in replays], profiles).groups[0]
        board_table = scoreboard(labelled, [r.anomaly_score for r in replays], profiles)
        board = board_table.groups[0]
        p = profiles[0]
        print(
            f"{name:<40} deployed {dep.score(p):6.1f} ({dep.detected}/{dep.windows}, {dep.events} alerts, "
            f"prec {dep.precision:.2f})  scoreboard {board.score(p):6.1f} ({board.detected}/{board.windows}, "
            f"{board.events} events, th {board_table.thresholds[p.name]:.4f})  {time.perf_counter() - started:.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
