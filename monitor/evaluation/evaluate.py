"""`monitor evaluate`: every file of a labelled corpus trained and replayed (`monitor.evaluation.replay`),
written out with optional plots, and scored: NAB's two protocols for NAB's layout, SKAB's outlier scores
and the event view for a labelled CSV corpus, and false alerts per 1,000 series-hours for both.

Per file (the default), each file's model is trained on that file's training rows, so every series is one
the model knows. With `fleet=K` the files are dealt into K folds (file i into fold i mod K) and each fold's
files are scored by one model trained on the training rows of all the other folds' files: every series
is then one the model never saw, as most are in a fleet (cold start, `monitor.models.online`). With
`shared`, one model trained on the training rows of all files scores every file: each series is one it
knows, but one model serves them all. Between per file and the fleet protocol, it tells what sharing a
model costs apart from what a series' being new to it costs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from monitor.config import DetectorConfig
from monitor.engine.scoring import Scorer
from monitor.errors import InputError
from monitor.evaluation.corpus import corpus_root, load_corpus
from monitor.evaluation.datafile import DataFile
from monitor.evaluation.labelled import SKAB, CsvLayout
from monitor.evaluation.nab import DEFAULT_PROFILES, load_profiles
from monitor.evaluation.plots import plot_replay
from monitor.evaluation.replay import Replay, replay, train_scorer, write_replay
from monitor.evaluation.report import (
    OutlierRow,
    deployed,
    format_false_alerts,
    format_outliers,
    format_table,
    outlier_rows,
    scoreboard,
)

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
    fleet: int = 0,
    shared: bool = False,
) -> Evaluation:
    """Train, replay and write every file of the corpus at `path` into `out`, then score it; `fleet`: the
    number of folds of the fleet protocol (0: per file); `shared`: one model for all files instead."""
    started = time.perf_counter()
    corpus = load_corpus(path, layout, csv_layout, detector.settings.features)
    scorer = _scorers(detector, corpus, fleet, shared, threads)
    replays = [
        _one(detector, file, Path(out), plots, partial(scorer, n), f"{n + 1}/{len(corpus)}")
        for n, file in enumerate(corpus)
    ]
    nab = corpus[0].label_column is None
    sections = _nab_tables(replays, Path(path)) if nab else (_outliers(replays),)
    return Evaluation(replays, (*sections, _false_alerts(replays)), time.perf_counter() - started)


def _scorers(
    detector: DetectorConfig, corpus: Sequence[DataFile], fleet: int, shared: bool, threads: int
) -> Callable[[int], Scorer]:
    """The scorer of file n under the protocol asked for."""
    if fleet and shared:
        raise InputError("--fleet and --shared are two protocols: choose one")
    if fleet:
        return _fleet_scorers(detector, corpus, fleet, threads)
    if shared:
        return _shared_scorer(detector, corpus, threads)
    return lambda n: train_scorer(detector, [corpus[n]], threads)


def _fleet_scorers(
    detector: DetectorConfig, corpus: Sequence[DataFile], folds: int, threads: int
) -> Callable[[int], Scorer]:
    """The scorer of file n under the fleet protocol: fold n mod `folds`' model, trained on first use."""
    if not 2 <= folds <= len(corpus):
        raise InputError(f"--fleet {folds}: need 2 to {len(corpus)} folds (the number of files)")
    _one_model_fits(corpus, "--fleet")
    trained: dict[int, Scorer] = {}

    def scorer(n: int) -> Scorer:
        fold = n % folds
        if fold not in trained:
            others = [f for i, f in enumerate(corpus) if i % folds != fold]
            trained[fold] = train_scorer(detector, others, threads)
        return trained[fold]

    return scorer


def _shared_scorer(detector: DetectorConfig, corpus: Sequence[DataFile], threads: int) -> Callable[[int], Scorer]:
    """The scorer of every file under `shared`: one model trained on all files, on first use."""
    _one_model_fits(corpus, "--shared")
    model = cache(partial(train_scorer, detector, corpus, threads))
    return lambda n: model()


def _one_model_fits(corpus: Sequence[DataFile], option: str) -> None:
    if len({f.features for f in corpus}) > 1:
        raise InputError(f"{option}: the files have different features, one model cannot serve them all")


def _one(
    detector: DetectorConfig, file: DataFile, out: Path, plots: bool, scorer: Callable[[], Scorer], counter: str
) -> Replay:
    trained = time.perf_counter()
    result = replay(detector, file, scorer())
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
    return format_outliers(outliers_after_training(replays))


def outliers_after_training(replays: Sequence[Replay]) -> list[OutlierRow]:
    """SKAB's scores and the event view over each file's test rows (after its training rows): the pooled
    row first, then one per file."""
    tests = [slice(r.file.train_rows, None) for r in replays]
    return outlier_rows(
        [r.file.name for r in replays],
        [r.file.labels[t] for r, t in zip(replays, tests, strict=True)],
        [r.active[t] for r, t in zip(replays, tests, strict=True)],
        [r.alert[t] for r, t in zip(replays, tests, strict=True)],
        [r.file.ts[t] for r, t in zip(replays, tests, strict=True)],
    )


def _false_alerts(replays: list[Replay]) -> str:
    """Over each file's rows after its training rows (NAB: after its probationary period)."""
    tests = [slice(r.file.train_rows, None) for r in replays]
    return format_false_alerts(
        [r.file.labels[t] for r, t in zip(replays, tests, strict=True)],
        [r.alert[t] for r, t in zip(replays, tests, strict=True)],
        [r.file.ts[t] for r, t in zip(replays, tests, strict=True)],
    )
