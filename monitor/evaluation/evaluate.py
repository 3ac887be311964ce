"""`monitor evaluate`: every file of a labelled corpus trained and replayed (`monitor.evaluation.replay`),
written out with optional plots, and scored by both of NAB's protocols."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.config import DetectorConfig
from monitor.evaluation.corpus import corpus_root, load_corpus
from monitor.evaluation.nab import DEFAULT_PROFILES, Profile, load_profiles
from monitor.evaluation.plots import plot_replay
from monitor.evaluation.replay import Replay, replay, train_scorer, write_replay
from monitor.evaluation.report import Table, deployed, format_table, scoreboard

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The replays of a corpus and the two tables over them."""

    replays: list[Replay]
    profiles: tuple[Profile, ...]
    tables: tuple[Table, Table]
    seconds: float

    def report(self) -> str:
        return "\n\n".join(format_table(t, self.profiles) for t in self.tables)


def evaluate(
    detector: DetectorConfig, path: str | Path, out: str | Path, plots: bool = False, threads: int = 1
) -> Evaluation:
    """Train, replay and write every file of the corpus at `path` into `out`, then score both protocols."""
    started = time.perf_counter()
    corpus, out = load_corpus(path), Path(out)
    profiles_file = corpus_root(Path(path)) / "profiles.json"
    profiles = load_profiles(profiles_file) if profiles_file.is_file() else DEFAULT_PROFILES
    replays = []
    for n, file in enumerate(corpus, 1):
        trained = time.perf_counter()
        result = replay(detector, file, train_scorer(detector, file, threads))
        write_replay(result, out)
        if plots:
            plot_replay(result, out)
        log.info(
            "%d/%d %s: %d rows, %d alerts, %.1fs (replay %.1fs)",
            n,
            len(corpus),
            file.name,
            len(file.ts),
            int(result.alert.sum()),
            time.perf_counter() - trained,
            result.seconds,
        )
        replays.append(result)
    labelled = [r.file.labelled for r in replays]
    tables = (
        deployed(labelled, [r.alert for r in replays], profiles),
        scoreboard(labelled, [r.anomaly_score for r in replays], profiles),
    )
    return Evaluation(replays, profiles, tables, time.perf_counter() - started)
