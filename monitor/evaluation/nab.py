"""The scoring rules of the Numenta Anomaly Benchmark (NAB v1.1), as pure functions over numpy arrays.

NAB's own code (`nab/sweeper.py`) is the specification; `tests/unit/test_nab.py` reproduces the raw
scores NAB published for a reference detector to 1e-9. In brief: the first 15% of a file (at most 750
rows) is probationary and not scored; inside a labelled window only the earliest detection counts,
weighted by a scaled sigmoid of its position (earlier is better); every detection outside a window is a
false positive, weighted by its distance after the preceding window; a window without a detection costs
`fn_weight`. Totals are normalised so that the null detector scores 0 and the perfect one 100.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750
OUTSIDE = -1
"""`window_of` value of a row outside every window."""
PROBATION = -2
"""`window_of` value of a probationary row (never scored)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One NAB cost matrix (`profiles.json`)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


DEFAULT_PROFILES = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)
"""NAB's three profiles, for corpora that come without a profiles.json."""


@dataclass(frozen=True, slots=True)
class Labelled:
    """One data file's rows and its labelled windows as inclusive (first row, last row) index pairs."""

    name: str
    n_rows: int
    windows: tuple[tuple[int, int], ...]

    @classmethod
    def from_times(cls, name: str, ts: np.ndarray, limits: Sequence[tuple[float, float]]) -> Labelled:
        """A window given as (start, end) timestamps covers the rows from the first at or after `start` up
        to the last before the first row after `end`: NAB works on row positions, and its files have a few
        duplicate and out-of-order timestamps."""
        ts = np.asarray(ts, dtype=np.float64)
        rows = []
        for start, end in limits:
            first = _first(ts >= start, 0)
            last = _first(ts[first:] > end, first) - 1
            if first <= last:
                rows.append((first, last))
        return cls(name, len(ts), tuple(sorted(rows)))

    @property
    def probation(self) -> int:
        return probationary_rows(self.n_rows)

    @property
    def category(self) -> str:
        """NAB names files `<category>/<file>.csv`; "-" for a file outside that layout."""
        return self.name.rpartition("/")[0] or "-"


@dataclass(frozen=True, slots=True)
class FileScore:
    """A file's raw NAB score at one set of detections, with NAB's row counts."""

    raw: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows: int
    """Windows that have scorable rows (those count for the null and perfect scores)."""
    detected: int
    """Windows with at least one detection."""


def _first(flags: np.ndarray, offset: int) -> int:
    """Index (plus `offset`) of the first True, or `offset + len(flags)` when there is none."""
    hits = np.flatnonzero(flags)
    return offset + (int(hits[0]) if len(hits) else len(flags))


def probationary_rows(n_rows: int) -> int:
    """NAB's probationary period: 15% of the rows, at most 750 (15% of 5000)."""
    return int(min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_FRACTION * 5000))


def load_profiles(path: str | Path) -> tuple[Profile, ...]:
    """The profiles of NAB's `profiles.json`, in file order."""
    doc = json.loads(Path(path).read_text())
    return tuple(
        Profile(name, float(c["tpWeight"]), float(c["fpWeight"]), float(c["fnWeight"]))
        for name, c in ((name, body["CostMatrix"]) for name, body in doc.items())
    )


def scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    """NAB's weight of a detection at a relative position: ~+1 at a window's start, 0 at its end, -1 far after."""
    position = np.asarray(position, dtype=np.float64)
    with np.errstate(over="ignore"):
        weight = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position >= 3.0, -1.0, weight)


MAX_TP = float(scaled_sigmoid(np.array(-1.0)))


def row_weights(labelled: Labelled, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """What a detection on each row would be worth, and which window (or OUTSIDE, PROBATION) each row is in.

    In a window of width w ending at row e, row i is worth tp·S(-(e - i + 1)/w)/S(-1). Outside, a row
    after a window of width w ending at e costs fp·S((i - e)/(w - 1)); before any window it costs fp.
    """
    n = labelled.n_rows
    index = np.arange(n)
    weights = np.full(n, -profile.fp_weight)
    window_of = np.full(n, OUTSIDE, dtype=np.int64)
    for k, (first, last) in enumerate(labelled.windows):
        width = last - first + 1
        inside = slice(first, last + 1)
        window_of[inside] = k
        weights[inside] = scaled_sigmoid(-(last - index[inside] + 1) / width) * profile.tp_weight / MAX_TP
        following = labelled.windows[k + 1][0] if k + 1 < len(labelled.windows) else n
        after = slice(last + 1, following)
        weights[after] = scaled_sigmoid((index[after] - last) / max(width - 1, 1)) * profile.fp_weight
    window_of[: labelled.probation] = PROBATION
    return weights, window_of


def score_detections(labelled: Labelled, detections: np.ndarray, profile: Profile) -> FileScore:
    """The raw score and counts of one file for a boolean detection per row."""
    detections = np.asarray(detections, dtype=bool)
    if detections.shape != (labelled.n_rows,):
        raise ValueError(f"{labelled.name}: {len(detections)} detections for {labelled.n_rows} rows")
    weights, window_of = row_weights(labelled, profile)
    scored = window_of != PROBATION
    outside = window_of == OUTSIDE
    fp_rows = detections & outside
    raw = float(weights[fp_rows].sum())
    windows = detected = 0
    for k in range(len(labelled.windows)):
        rows = window_of == k
        if not rows.any():
            continue
        windows += 1
        hits = rows & detections
        if hits.any():
            detected += 1
            raw += float(weights[hits].max())
        else:
            raw -= profile.fn_weight
    inside = scored & ~outside
    return FileScore(
        raw=raw,
        tp=int((detections & inside).sum()),
        fp=int(fp_rows.sum()),
        fn=int((~detections & inside).sum()),
        tn=int((~detections & outside).sum()),
        windows=windows,
        detected=detected,
    )


def sweep(files: Sequence[Labelled], scores: Sequence[np.ndarray], profile: Profile) -> tuple[float, float]:
    """NAB's threshold optimisation: the threshold on `scores` with the best total raw score over all files.

    A row is a detection when its score is >= the threshold. Returns (threshold, total raw score); the
    threshold is +inf when detecting nothing is best. Among equal totals the highest threshold wins,
    as in NAB.
    """
    values, deltas = [], []
    n_windows = 0
    for labelled, file_scores in zip(files, scores, strict=True):
        weights, window_of = row_weights(labelled, profile)
        keep = window_of != PROBATION
        file_scores = np.asarray(file_scores, dtype=np.float64)[keep]
        weights, window_of = weights[keep], window_of[keep]
        delta = np.where(window_of == OUTSIDE, weights, 0.0)
        order = np.argsort(-file_scores, kind="stable")
        for k in np.unique(window_of[window_of >= 0]):
            n_windows += 1
            rows = order[window_of[order] == k]  # the window's rows, highest score first
            best = np.maximum.accumulate(np.concatenate(([-profile.fn_weight], weights[rows])))
            delta[rows] = np.diff(best)
        values.append(file_scores)
        deltas.append(delta)
    all_scores, all_deltas = np.concatenate(values), np.concatenate(deltas)
    order = np.argsort(-all_scores, kind="stable")
    ranked = all_scores[order]
    totals = -profile.fn_weight * n_windows + np.cumsum(all_deltas[order])
    last_of_tie = np.append(ranked[1:] != ranked[:-1], True)  # a threshold takes every row of equal score
    candidates = np.concatenate(([-profile.fn_weight * n_windows], totals[last_of_tie]))
    thresholds = np.concatenate(([np.inf], ranked[last_of_tie]))
    best = int(np.argmax(candidates))
    return float(thresholds[best]), float(candidates[best])


def normalised(raw: float, windows: int, profile: Profile) -> float:
    """100 · (raw - null) / (perfect - null), with null = -fn·windows and perfect = tp·windows; NaN without windows."""
    null, perfect = -profile.fn_weight * windows, profile.tp_weight * windows
    return 100.0 * (raw - null) / (perfect - null) if perfect > null else math.nan
