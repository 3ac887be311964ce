"""Normalisation learned online for series the model never saw in training.

The pooled statistics of the training series are a poor fit for a new host whose level or scale is its
own: every window would look anomalous (or none would). Instead each unseen series learns its own mean
and standard deviation from its first `warmup` windows and then keeps them fixed, so a later incident
cannot drag the normalisation along with it.

Per window the estimate is robust: values more than `OUTLIER_MADS` scaled median absolute deviations
from the window's median are left out (a spike during the warm-up does not set the scale). Across
windows the law of total variance combines them: the variance of the series is the mean within-window
variance plus the variance of the window means, which matters when a window is shorter than a season.
A series that sits at one value between bursts (an error counter) has a robust variance of 0: every
burst is "beyond 5 MADs" of a window whose MAD is 0. Its bursts are its spread, so it takes the mean
variance of its windows with every value in; without that its sd would be the floor and each later
burst thousands of sds out. State per series: a counter and four vectors of F floats; at most
`max_series` series are kept (the least recently scored go first, and relearn if they come back).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monitor.engine.slots import Slots, rounds
from monitor.models.normalisation import FeatureStats

MOMENTS = 4
"""Sums kept per series and feature while it learns (`OnlineNormalisation._sums`)."""
OUTLIER_MADS = 5.0
MAD_TO_SD = 1.4826
"""MAD × this estimates the standard deviation of normally distributed values."""
FLEET_MEANS = 1.0
FLEET_SCALE = 2.0
"""A new series "looks like the fleet" on a feature when its mean is within FLEET_MEANS pooled sds of the
pooled mean and its sd within a factor FLEET_SCALE of the pooled sd (`OnlineNormalisation._settled_stats`)."""
ALIKE_MEANS = 0.25
ALIKE_SCALE = 1.25
"""The training series are one fleet on a feature when their means spread (sd) by at most ALIKE_MEANS of
their median sd, and their sds by at most a factor ALIKE_SCALE (sd of their logs): only then are the
pooled statistics how each of them was normalised in training (`fleet_alike`)."""


class OnlineNormalisation:
    """Per-series statistics of unseen series, learned from their first `warmup` windows.

    Kept in arrays with a row per series (`Slots`), so a batch's statistics are one fancy index away: at
    100,000 series, objects per series cost the scoring thread 1.7 us a window in cache misses alone.
    """

    def __init__(
        self,
        floor: np.ndarray,
        warmup: int,
        max_series: int,
        fleet: FeatureStats | None = None,
        alike: np.ndarray | None = None,
    ) -> None:
        self.floor = np.asarray(floor, dtype=np.float64)
        self.warmup = warmup
        self.max_series = max_series
        self.fleet = fleet
        """The statistics pooled over the training series: a new series that looks like them keeps them."""
        self.alike = np.ones(len(self.floor), dtype=bool) if alike is None else np.asarray(alike, dtype=bool)
        """Features on which the training series were one fleet (`fleet_alike`): elsewhere the pooled
        statistics normalised none of them, and a new series keeps its own."""
        features = len(self.floor)
        self._windows = np.zeros(0, dtype=np.int64)
        self._sums = np.zeros((0, MOMENTS, features))
        """(MOMENTS, F) a series: sums of the robust window means, of their squares, of the robust
        within-window variances, and of the within-window variances with every value in."""
        self._mean = np.zeros((0, features))
        self._std = np.zeros((0, features))
        """The estimate from `_sums`, kept: after the warm-up it is all a series needs, window after window."""
        self._rows = Slots(self, ("_windows", "_sums", "_mean", "_std"))
        self._series: OrderedDict[str, int] = OrderedDict()
        """Series → row, least recently scored first."""

    def __len__(self) -> int:
        return len(self._series)

    def rows(self, series: Sequence[str], batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k, F) means and stds for k raw windows (k, W, F) of unseen series, learning from them first,
        and (k,) whether each row's statistics are still provisional (its series' warm-up is not over).

        Rows are taken in order, so a series with several windows in one batch learns from each before
        the next one is normalised, exactly as if they had come in separate polls.
        """
        slots, released = self._slots(series)
        means, stds = self._mean[slots], self._std[slots]
        provisional = np.zeros(len(slots), dtype=bool)
        learning = np.flatnonzero(self._windows[slots] < self.warmup)
        if len(learning):  # robust moments (medians) only for windows that still teach their series something
            self._learn(slots[learning], batch[learning], learning, (means, stds, provisional))
        self._rows.give_back(released)
        return means, stds, provisional

    def _slots(self, series: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Each window's row, its series moved to the most recently scored end, and the rows of series let
        go beyond `max_series` meanwhile: given back only after the batch, so that a series evicted and
        seen again within it starts afresh in another row, as it would one window at a time."""
        found = list(map(self._series.get, series))
        if None not in found:  # the steady state: every series known, no Python per window
            deque(map(self._series.move_to_end, series), maxlen=0)
            return np.array(found, dtype=np.int64), []
        released: list[int] = []
        for i, name in enumerate(series):
            slot = self._series.get(name)
            if slot is not None:
                self._series.move_to_end(name)
            else:
                if len(self._series) >= self.max_series:
                    released.append(self._series.popitem(last=False)[1])
                slot = self._series[name] = self._rows.take()
                self._set(slot, 0, np.zeros_like(self._sums[slot]))
            found[i] = slot
        return np.array(found, dtype=np.int64), released

    def _learn(
        self,
        slots: np.ndarray,
        batch: np.ndarray,
        rows: np.ndarray,
        out: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Learn from the windows of series still in their warm-up (rows `slots`) and write each window's
        statistics into `out` (means, stds, provisional) at `rows`. All series at once, in rounds: round r
        takes the r-th window of every series, so each series adds its windows in order, with the same
        arithmetic as one window at a time (a window after the end of the warm-up teaches nothing)."""
        window_means, window_vars = _robust_moments(batch)
        moments = np.stack((window_means, window_means**2, window_vars, batch.var(axis=1)), axis=1)  # (k, 4, F)
        owners, group = np.unique(slots, return_inverse=True)
        windows, sums = self._windows[owners], self._sums[owners]
        mean, std = self._mean[owners], self._std[owners]
        means, stds, provisional = out
        for taken in rounds(group.tolist()):
            g = group[taken]
            learns = windows[g] < self.warmup
            g, moment = g[learns], moments[taken[learns]]
            windows[g] += 1
            sums[g] += moment
            mean[g], std[g] = _estimate(sums[g], windows[g], self.floor)
            settled = g[windows[g] == self.warmup]
            if len(settled):
                mean[settled], std[settled] = self._settled_stats(mean[settled], std[settled])
            target = rows[taken]
            means[target], stds[target] = mean[group[taken]], std[group[taken]]
            provisional[target] = windows[group[taken]] < self.warmup
        self._windows[owners], self._sums[owners], self._mean[owners], self._std[owners] = windows, sums, mean, std

    def snapshot(self, name: str) -> dict[str, Any] | None:
        """What was learned about one series (None: nothing yet), for a checkpoint (`monitor.service.checkpoint`)."""
        slot = self._series.get(name)
        return None if slot is None else {"windows": int(self._windows[slot]), "sums": self._sums[slot].copy()}

    def restore(self, name: str, state: Mapping[str, Any]) -> None:
        """Take a series back from `snapshot`; ValueError if it has another number of features. A snapshot
        written before the variances with every value in were kept has them as 0 (no fallback)."""
        sums = np.asarray(state["sums"], dtype=np.float64)
        if sums.shape == (MOMENTS - 1, len(self.floor)):
            sums = np.vstack((sums, np.zeros((1, len(self.floor)))))
        if sums.shape != (MOMENTS, len(self.floor)):
            raise ValueError(f"online normalisation of shape {sums.shape}, expected ({MOMENTS}, {len(self.floor)})")
        slots, released = self._slots([name])  # evicts the least recently used series beyond max_series
        self._rows.give_back(released)
        self._set(int(slots[0]), int(state["windows"]), sums)

    def inherit(self, previous: OnlineNormalisation, known: set[str] | frozenset[str] = frozenset()) -> None:
        """Take over what `previous` learned (a hot reload), except for series the new model knows."""
        if previous._sums.shape[2] != len(self.floor):
            return
        for name, row in previous._series.items():
            if name not in known:
                slot = self._series.get(name)
                if slot is None:
                    slot = self._series[name] = self._rows.take()
                self._set(slot, int(previous._windows[row]), previous._sums[row])  # `_set` copies it in
        while len(self._series) > self.max_series:
            self._rows.give_back([self._series.popitem(last=False)[1]])

    def _set(self, slot: int, windows: int, sums: np.ndarray) -> None:
        """A series' row from its sums (new, a checkpoint, a hot reload), settled if its warm-up is over."""
        mean, std = _estimate(sums, windows, self.floor) if windows else (sums[0], self.floor)
        if windows >= self.warmup:
            mean, std = self._settled_stats(mean, std)
        self._windows[slot], self._sums[slot], self._mean[slot], self._std[slot] = windows, sums, mean, std

    def _settled_stats(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fleet's statistics for each feature (of each row) on which a series' own estimate looks like
        the fleet (its mean within `FLEET_MEANS` fleet sds of the fleet's, its sd within a factor
        `FLEET_SCALE` of the fleet's), its own otherwise.

        A warm-up rarely spans whole cycles of a seasonal series, so its own estimate is off by a fraction
        of the cycle's amplitude, enough for the model to reconstruct every peak worse than in training;
        the fleet's statistics come from whole training histories, and fit any series drawn like them.
        """
        if self.fleet is None:
            return mean, std
        fleet_mean, fleet_std = self.fleet.mean, self.fleet.std
        like = (
            self.alike
            & (np.abs(mean - fleet_mean) <= FLEET_MEANS * fleet_std)
            & (np.abs(np.log(std / fleet_std)) <= np.log(FLEET_SCALE))
        )
        return np.where(like, fleet_mean, mean), np.where(like, fleet_std, std)


def fleet_alike(series: Sequence[FeatureStats]) -> np.ndarray:
    """Per feature: whether the training series share one level and scale (`ALIKE_MEANS`, `ALIKE_SCALE`).

    Training normalises each series by its own statistics. Where the series are alike, the pooled ones are
    those same statistics, known better than a new series' warm-up can estimate them; where they differ
    (hosts at different loads), the pooled ones are between-series averages that normalised no series, and
    a new series normalised by them is off by its distance from that average, every window.
    """
    means = np.stack([s.mean for s in series])
    stds = np.stack([s.std for s in series])
    spread = means.std(axis=0) <= ALIKE_MEANS * np.median(stds, axis=0)
    return spread & (np.log(stds).std(axis=0) <= np.log(ALIKE_SCALE))


def _estimate(sums: np.ndarray, windows: np.ndarray | int, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd from (..., MOMENTS, F) sums over `windows` windows (law of total variance), sd at least
    `floor`; where the robust variance is 0, the mean within-window variance with every value in."""
    scaled = sums / np.asarray(windows, dtype=np.float64)[..., None, None]
    mean_of_means, sq_mean, within, everything = (scaled[..., i, :] for i in range(MOMENTS))
    robust = np.maximum(within + sq_mean - mean_of_means**2, 0.0)
    return mean_of_means, np.maximum(np.sqrt(np.where(robust > 0.0, robust, everything)), floor)


def _robust_moments(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, F) mean and variance of each window's values without its outliers (beyond OUTLIER_MADS MADs)."""
    median = np.median(batch, axis=1, keepdims=True)
    deviation = np.abs(batch - median)
    mad = np.median(deviation, axis=1, keepdims=True)
    inliers = deviation <= OUTLIER_MADS * MAD_TO_SD * mad
    count = inliers.sum(axis=1)  # >= half the window: the median's neighbours are always inliers
    mean = np.where(inliers, batch, 0.0).sum(axis=1) / count
    variance = np.where(inliers, (batch - mean[:, None, :]) ** 2, 0.0).sum(axis=1) / count
    return mean, variance
