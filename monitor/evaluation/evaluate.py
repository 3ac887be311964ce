"""`monitor evaluate`: every file of a labelled corpus trained and replayed (`monitor.evaluation.replay`),
written out with optional plots, and scored: NAB's two protocols for NAB's layout, SKAB's outlier scores
and the event view for a labelled CSV corpus."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.config import DetectorConfig
from monitor.evaluation.corpus import corpus_root, load_corpus
from monitor.evaluation.datafile import DataFile
from monitor.evaluation.labelled import SKAB, CsvLayout
from monitor.evaluation.nab import DEFAULT_PROFILES, load_profiles
from monitor.evaluation.plots import plot_replay
from monitor.evaluation.replay import Replay, replay, train_scorer, write_replay
from monitor.evaluation.report import deployed, format_outliers, format_table, outlier_rows, scoreboard

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The replays of a corpus and the report printed over them."""

    replays: list[Replay]
    sections: tuple[str, ...]
    seconds: float

    def report(self) -> str:
        return "\n\n".join(self.sections)


def evaluate(
    detector: DetectorConfig,
    path: str | Path,
    out: str | Path,
    plots: bool = False,
    threads: int = 1,
    layout: str = "auto",
    csv_layout: CsvLayout = SKAB,
) -> Evaluation:
    """Train, replay and write every file of the corpus at `path` into `out`, then score it."""
    started = time.perf_counter()
    corpus = load_corpus(path, layout, csv_layout, detector.settings.features)
    replays = [
        _one(detector, file, Path(out), plots, threads, f"{n}/{len(corpus)}") for n, file in enumerate(corpus, 1)
    ]
    nab = corpus[0].label_column is None
    sections = _nab_tables(replays, Path(path)) if nab else (_outliers(replays),)
    return Evaluation(replays, sections, time.perf_counter() - started)


def _one(detector: DetectorConfig, file: DataFile, out: Path, plots: bool, threads: int, counter: str) -> Replay:
    trained = time.perf_counter()
    result = replay(detector, file, train_scorer(detector, file, threads))
    write_replay(result, out)
    if plots:
        plot_replay(result, out)
    log.info(
        "%s %s: %d rows, %d alerts, %.1fs (replay %.1fs)",
        counter,
        file.name,
        len(file.ts),
        int(result.alert.sum()),
        time.perf_counter() - trained,
        result.seconds,
    )
    return result


def _nab_tables(replays: list[Replay], path: Path) -> tuple[str, ...]:
    profiles_file = corpus_root(path) / "profiles.json"
    profiles = load_profiles(profiles_file) if profiles_file.is_file() else DEFAULT_PROFILES
    labelled = [r.file.labelled for r in replays]
    tables = (
        deployed(labelled, [r.alert for r in replays], profiles),
        scoreboard(labelled, [r.anomaly_score for r in replays], profiles),
    )
    return tuple(format_table(t, profiles) for t in tables)


def _outliers(replays: list[Replay]) -> str:
    """Scores over each file's test rows (after its training rows)."""
    tests = [slice(r.file.train_rows, None) for r in replays]
    rows = outlier_rows(
        [r.file.name for r in replays],
        [r.file.labels[t] for r, t in zip(replays, tests, strict=True)],
        [r.active[t] for r, t in zip(replays, tests, strict=True)],
        [r.alert[t] for r, t in zip(replays, tests, strict=True)],
        [r.file.ts[t] for r, t in zip(replays, tests, strict=True)],
    )
    return format_outliers(rows)
