"""Rolling per-series thresholds on the anomaly score: mean + k·sd of about the last `history` normal scores.

Every series starts from the same statistics, the healthy validation scores that come with the model, so
it can be judged after a short warm-up instead of after `history` windows. Scores judged anomalous are
kept out of the statistics: otherwise a long incident would raise its own threshold and hide itself. Only
after `adapt_after` anomalous windows in a row are they learned again: a change that lasts that long is
the series' new normal, and an alert that could never resolve would be worse than none.
With `learn_within`, a normal score is learned as at most mean + that many sd (winsorised statistics):
a score that creeps up under the threshold, as a slow leak's does, then cannot drag the threshold up
after it. Off by default: it also lowers the threshold of series with heavy-tailed normal scores.

An anomalous run is also over once its judged score falls below `settle` times the run's peak: after a
large incident a series often settles a little above its old threshold (a machine that does not quite
return to the state it was trained on), and those windows are the aftermath, not the incident, so they
are not anomalous (the alert can resolve). They are kept out of the statistics like anomalous ones, so
they cannot raise the threshold and hide the next incident, and count towards `adapt_after`, so a series
that stays there is learned in the end; the peak is forgotten once the score falls below the threshold.

What is judged is the mean of a series' last `smoothing` scores, not one window's score: a single
reconstruction error is noisy and heavy-tailed, while a short average rises with a real change of
behaviour and barely moves for one odd point (the short-term average of Numenta's anomaly likelihood).

Scores are in the units of the model that gave them: a model trained for fewer epochs, on other data
or of another kind can score the same healthy window ten times higher. When another model takes over
(a hot reload, or a restart that restores statistics learned under the previous one) every series'
statistics are rescaled by the ratio of the two models' scales, the standard deviation of their smoothed
validation scores (the seed): each series keeps its own threshold, in the new units, instead of paging on
every window (or missing every incident) until `history` new scores have replaced the old ones. The
spread, not the mean, because the threshold sits k standard deviations above the mean: a model that
misfits every window by a similar amount raises the mean of its scores far more than their spread.

The history is kept as running sums in `BLOCKS` blocks of `ceil(history / BLOCKS)` scores, not as the
scores themselves: when the newest block is full the oldest one is dropped whole, so the statistics cover
between `history - block + 1` and `history` scores (exactly `history` when it is at most `BLOCKS`). That
is a few hundred bytes per series instead of 8 bytes per remembered score, and every series' state lives
in arrays indexed by slot, so a batch of windows is judged with a handful of numpy operations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.engine.slots import Slots

BLOCKS = 16


@dataclass(frozen=True, slots=True)
class ThresholdSettings:
    warmup: int = 16
    """Windows of a series that are scored and learned from, but never judged anomalous."""
    history: int = 2000
    """How many recent normal scores the statistics cover."""
    k: float = 6.0
    """Standard deviations above the mean that make a score anomalous."""
    minimum: float = 0.0
    """A floor for the threshold, for series so regular that their deviation is near zero."""
    smoothing: int = 20
    """Windows averaged into the judged score (the series' last `smoothing` scores); 1 judges each alone."""
    adapt_after: int = 2000
    """Consecutive anomalous windows after which a series' scores are learned again (0: never), so that a
    lasting change of level becomes the new normal and its alert resolves instead of staying open."""
    settle: float = 0.1
    """An anomalous run is over once its judged score falls below this fraction of the run's peak (0: off):
    what follows is not anomalous even while it stays above the old threshold, so an incident after which
    the series settles at a slightly different level resolves instead of staying open. It is not learned
    either (it counts towards `adapt_after`), so it cannot raise the threshold over the next incident."""
    hold: float = 0.85
    """Once a run is anomalous it goes on while the judged score stays above this fraction of the threshold
    (1: off): an incident whose score dips a little under the threshold stays one incident, its alert open
    and its scores out of the statistics, instead of resolving in the dip and teaching the threshold the
    incident's level. A series' first crossing is still at the threshold itself."""
    learn_within: float = 0.0
    """A normal score is learned as at most mean + this many standard deviations (0: as it is), so scores
    that creep up under the threshold cannot drag it up after them."""


@dataclass(frozen=True, slots=True)
class Judgement:
    threshold: float
    anomalous: bool
    warming_up: bool
    score: float
    """What was compared with the threshold: the mean of the series' last `smoothing` scores."""


@dataclass(frozen=True, slots=True)
class Judgements:
    """`judge_many`'s answer, one entry per series judged (same meaning as `Judgement`)."""

    threshold: np.ndarray
    anomalous: np.ndarray
    warming_up: np.ndarray
    score: np.ndarray


class ThresholdBank:
    """The thresholds of all series of one detector."""

    def __init__(self, settings: ThresholdSettings, baseline: np.ndarray) -> None:
        self.settings = settings
        self.block = math.ceil(settings.history / BLOCKS)
        self.n_blocks = max(settings.history // self.block, 1)
        self._judged = np.zeros(0, dtype=np.int64)
        self._ready = 0
        """Live series whose `_judged` reached `warmup` (kept as a count: it is read after every poll)."""
        self._sums = np.zeros((0, self.n_blocks))
        self._squares = np.zeros((0, self.n_blocks))
        self._counts = np.zeros((0, self.n_blocks), dtype=np.int64)
        self._current = np.zeros(0, dtype=np.int64)
        self._recent = np.zeros((0, settings.smoothing))
        """The last `smoothing` scores in a ring; `_seen` says how many of them are real."""
        self._seen = np.zeros(0, dtype=np.int64)
        self._streak = np.zeros(0, dtype=np.int64)
        """Consecutive anomalous judgements of each series (for `adapt_after`)."""
        self._held = np.zeros((0, 3))
        """Count, sum and sum of squares of the scores of the current anomalous run that were kept out of
        the statistics: what a dismissal (`accept`) learns after all."""
        self._accepting = np.zeros(0, dtype=bool)
        """A person dismissed the series' current anomalous run: its scores are normal until the run ends."""
        self._peak = np.zeros(0)
        """Highest judged score of the series' current run above the threshold (0: not in one), for `settle`."""
        arrays = (
            "_judged", "_sums", "_squares", "_counts", "_current", "_recent", "_seen", "_streak", "_held",
            "_accepting", "_peak",
        )  # fmt: skip
        self._slots = Slots(self, arrays)
        self._seed = self._slots.take()
        """A slot that is never judged: the statistics of the seed, copied into every new series' slot."""
        self._scale: float | None = None
        """The scale (`_scale_of`) of the model whose units the statistics are in (None: unknown)."""
        self.reseed(baseline)

    def reseed(self, baseline: np.ndarray) -> None:
        """Seed series first seen from now on with these validation scores (a new model's, after a hot
        reload: its scores are what the series will be judged on), and carry the statistics of series
        already tracked into that model's units (`_scale`)."""
        seed = _evenly(_moving_mean(np.asarray(baseline, dtype=float), self.settings.smoothing), self.settings.history)
        scale = _scale_of(seed)
        if scale is not None and self._scale is not None:
            self._rescale(slice(None), scale / self._scale)
        self._scale = scale
        for array in (self._sums, self._squares, self._counts, self._current):
            array[self._seed] = 0
        self._push(np.array([self._seed]), seed)

    def _rescale(self, slots: slice | int, ratio: float) -> None:
        """Multiply the statistics of `slots` as if every score behind them had been `ratio` times itself."""
        if ratio == 1.0:
            return
        for array in (self._sums, self._recent, self._peak):
            array[slots] *= ratio
        self._squares[slots] *= ratio * ratio
        self._held[slots, 1] *= ratio
        self._held[slots, 2] *= ratio * ratio

    def judge(self, series: str, score: float) -> Judgement:
        """Compare the series' smoothed score with its current threshold, then learn from it if it was normal."""
        j = self.judge_many([series], np.array([score], dtype=float))
        return Judgement(float(j.threshold[0]), bool(j.anomalous[0]), bool(j.warming_up[0]), float(j.score[0]))

    def judge_many(
        self, series: Sequence[str], scores: np.ndarray, provisional: np.ndarray | None = None
    ) -> Judgements:
        """`judge` for a batch in which every series appears at most once.

        A `provisional` score (the scorer is still learning the series' normalisation) is reported as
        warming up and otherwise ignored: not judged, not learned, not counted towards the warm-up, so a
        series' threshold starts from the seed once its scores mean what the seed's do.
        """
        if provisional is not None and provisional.any():
            return self._judge_final(series, scores, provisional)
        slots = self._slots.of(series, self._slot)
        threshold, mean, sd = self._thresholds(slots)
        warming_up = self._judged[slots] < self.settings.warmup
        seen = self._seen[slots]
        self._recent[slots, seen % self.settings.smoothing] = scores
        self._seen[slots] = seen + 1
        level = self._recent[slots].sum(axis=1) / np.minimum(seen + 1, self.settings.smoothing)
        peak = self._peak[slots]
        above = ~warming_up & (level > np.where(peak > 0, self.settings.hold * threshold, threshold))
        settled = above & (level < self.settings.settle * peak)
        anomalous = above & ~self._accepting[slots] & ~settled
        self._accepting[slots] &= above
        self._peak[slots] = np.where(above, np.maximum(peak, level), 0.0)
        self._judged[slots] += 1
        self._ready += int(np.count_nonzero(warming_up & (self._judged[slots] >= self.settings.warmup)))
        kept_out = anomalous | settled
        streak = np.where(kept_out, self._streak[slots] + 1, 0)
        self._streak[slots] = streak
        adapt = self.settings.adapt_after
        learn = ~kept_out | (streak > adapt) if adapt > 0 else ~kept_out
        within = self.settings.learn_within
        learned = np.where(kept_out, level, np.minimum(level, mean + within * sd)) if within else level
        self._push(slots[learn], learned[learn])
        self._hold(slots, level, anomalous & ~learn, anomalous)
        return Judgements(threshold, anomalous, warming_up, level)

    def _judge_final(self, series: Sequence[str], scores: np.ndarray, provisional: np.ndarray) -> Judgements:
        """`judge_many` of the final scores only; provisional ones come back as warming up, unjudged."""
        final = np.flatnonzero(~provisional)
        slots = self._slots.of(series, self._slot)
        none = np.zeros(len(scores), dtype=bool)
        judged = Judgements(self._thresholds(slots)[0], none, ~none, scores.copy())
        if len(final):
            part = self.judge_many([series[i] for i in final], scores[final])
            for name in ("threshold", "anomalous", "warming_up", "score"):
                getattr(judged, name)[final] = getattr(part, name)
        return judged

    def _thresholds(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """mean + k·sd of each slot's statistics, at least `minimum`; with the mean and sd."""
        n = self._counts[slots].sum(axis=1)
        mean = self._sums[slots].sum(axis=1) / np.maximum(n, 1)
        sd = np.sqrt(np.maximum(self._squares[slots].sum(axis=1) / np.maximum(n, 1) - mean * mean, 0.0))
        return np.maximum(mean + self.settings.k * sd, self.settings.minimum), mean, sd

    def accept(self, series: str) -> None:
        """A person judged the series' current anomalous run normal (a dismissed alert): learn the scores
        that were kept out of the statistics, and take the rest of the run as normal until it ends."""
        slot = self._slots.get(series)
        if slot is None:
            return
        n, total, squares = self._held[slot]
        current = self._current[slot]
        self._counts[slot, current] += int(n)
        self._sums[slot, current] += total
        self._squares[slot, current] += squares
        self._held[slot] = 0.0
        self._accepting[slot] = True

    def _hold(self, slots: np.ndarray, level: np.ndarray, held: np.ndarray, run: np.ndarray) -> None:
        """Remember the scores kept out of the statistics while an anomalous run lasts; forget them after."""
        self._held[slots[~run]] = 0.0
        rows = slots[held]
        self._held[rows] += np.column_stack((np.ones(len(rows)), level[held], level[held] ** 2))

    def judged_enough(self) -> int:
        """Series past their warm-up: the ones that can alert."""
        return self._ready

    def forget(self, series: str) -> None:
        slot = self._slots.pop(series)
        if slot is not None:
            self._ready -= int(self._judged[slot] >= self.settings.warmup)

    def snapshot(self, series: str) -> dict[str, Any] | None:
        """The series' statistics, so a restored series judges exactly as before."""
        slot = self._slots.get(series)
        if slot is None:
            return None
        seen, size = int(self._seen[slot]), self.settings.smoothing
        ring, start = self._recent[slot], seen % size  # oldest first: the ring from its next write on
        recent = np.concatenate((ring[start:], ring[:start]))[size - min(seen, size) :] if seen else np.zeros(0)
        return {
            "judged": int(self._judged[slot]),
            "block": self.block,
            "sums": self._sums[slot].copy(),
            "squares": self._squares[slot].copy(),
            "counts": self._counts[slot].copy(),
            "current": int(self._current[slot]),
            "recent": recent,
            "streak": int(self._streak[slot]),
            "held": self._held[slot].copy(),
            "accepting": bool(self._accepting[slot]),
            "peak": float(self._peak[slot]),
            "scale": self._scale,
        }

    def restore(self, series: str, state: Mapping[str, Any]) -> bool:
        """Rebuild a series' statistics from `snapshot`, in the serving model's units if they were learned
        under another; False (nothing restored) when they were kept in blocks of another size (`history`
        changed since), so the series warms up again."""
        if "values" in state:  # written before the statistics were kept in blocks: the scores themselves
            state = self._from_values(state)
        counts = np.asarray(state["counts"])
        if state["block"] != self.block or counts.shape != (self.n_blocks,):
            return False
        self.forget(series)
        slot = self._slot(series)
        self._sums[slot], self._squares[slot], self._counts[slot] = state["sums"], state["squares"], counts
        self._current[slot] = int(state["current"])
        recent = np.asarray(state.get("recent", ()), dtype=float)[-self.settings.smoothing :]
        self._recent[slot, : len(recent)] = recent
        self._seen[slot] = len(recent)
        was_ready = self._judged[slot] >= self.settings.warmup
        self._judged[slot] = int(state["judged"])
        self._streak[slot] = int(state.get("streak", 0))
        self._held[slot] = state.get("held", np.zeros(3))
        self._accepting[slot] = bool(state.get("accepting", False))
        self._peak[slot] = float(state.get("peak", 0.0))
        scale = state.get("scale")
        if scale is not None and self._scale is not None:
            self._rescale(slot, self._scale / scale)
        self._ready += int(self._judged[slot] >= self.settings.warmup) - int(was_ready)
        return True

    def _from_values(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The block form of a snapshot that holds the remembered scores themselves."""
        scratch = ThresholdBank(self.settings, np.zeros(0))
        scratch._push(np.array([scratch._seed]), np.asarray(state["values"], dtype=float)[-self.settings.history :])
        converted = {"judged": state["judged"], "recent": state.get("recent", ()), "block": self.block}
        for name in ("sums", "squares", "counts", "current"):
            converted[name] = getattr(scratch, f"_{name}")[scratch._seed]
        return converted

    def _slot(self, series: str) -> int:
        slot = self._slots.get(series)
        if slot is not None:
            return slot
        slot = self._slots.add(series)
        for array in (self._sums, self._squares, self._counts, self._current):
            array[slot] = array[self._seed]
        self._judged[slot] = self._seen[slot] = self._streak[slot] = 0
        self._recent[slot] = self._held[slot] = self._peak[slot] = 0.0
        self._accepting[slot] = False
        self._ready += int(self.settings.warmup == 0)
        return slot

    def _push(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Learn normal scores, one per slot (a seed: many for one slot, in order)."""
        if len(slots) != len(values):
            for value in values:
                self._push(slots, np.array([value]))
            return
        current = self._current[slots]
        full = self._counts[slots, current] >= self.block
        if full.any():
            moved = slots[full]
            current[full] = (current[full] + 1) % self.n_blocks
            self._current[moved] = current[full]
            for array in (self._sums, self._squares, self._counts):
                array[moved, current[full]] = 0
        self._sums[slots, current] += values
        self._squares[slots, current] += values * values
        self._counts[slots, current] += 1


def _scale_of(seed: np.ndarray) -> float | None:
    """How far a model's healthy judged scores spread: the sd of its seed (None when it has none)."""
    finite = seed[np.isfinite(seed)]
    sd = float(finite.std()) if len(finite) > 1 else 0.0
    return sd if sd > 0.0 else None


def _moving_mean(values: np.ndarray, n: int) -> np.ndarray:
    """Means of n consecutive values: the seed must hold smoothed scores, like the ones it is compared with."""
    if n <= 1 or len(values) == 0:
        return values
    if len(values) < n:
        return np.array([values.mean()])
    return np.convolve(values, np.full(n, 1.0 / n), mode="valid")


def _evenly(values: np.ndarray, n: int) -> np.ndarray:
    """At most n values spread evenly over the array, keeping its distribution."""
    if len(values) <= n:
        return values
    return values[np.linspace(0, len(values) - 1, n).round().astype(int)]
