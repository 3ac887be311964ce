"""Normalisation learned online for series the model never saw in training.

The pooled statistics of the training series are a poor fit for a new host whose level or scale is its
own: every window would look anomalous (or none would). Instead each unseen series learns its own mean
and standard deviation from its first `warmup` windows and then keeps them fixed, so a later incident
cannot drag the normalisation along with it.

Per window the estimate is robust: values more than `OUTLIER_MADS` scaled median absolute deviations
from the window's median are left out (a spike during the warm-up does not set the scale). Across
windows the law of total variance combines them: the variance of the series is the mean within-window
variance plus the variance of the window means, which matters when a window is shorter than a season.
State per series: a counter and three vectors of F floats; at most `max_series` series are kept (the
least recently scored go first, and relearn if they come back).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.engine.slots import rounds
from monitor.models.normalisation import FeatureStats

OUTLIER_MADS = 5.0
MAD_TO_SD = 1.4826
"""MAD × this estimates the standard deviation of normally distributed values."""
FLEET_MEANS = 1.0
FLEET_SCALE = 2.0
"""A new series "looks like the fleet" on a feature when its mean is within FLEET_MEANS pooled sds of the
pooled mean and its sd within a factor FLEET_SCALE of the pooled sd (`OnlineNormalisation._settled_stats`)."""


@dataclass(slots=True)
class _Running:
    windows: int
    sums: np.ndarray
    """(3, F): sum of window means, of squared window means, of within-window variances."""
    mean: np.ndarray
    std: np.ndarray
    """The estimate from `sums`, kept: after the warm-up it is all a series needs, window after window."""

    @classmethod
    def of(cls, windows: int, sums: np.ndarray, floor: np.ndarray) -> _Running:
        """A state from its sums, with the estimate they give (before any window: the floor)."""
        mean, std = _estimate(sums, windows, floor) if windows else (sums[0], floor)
        return cls(windows, sums, mean, std)


class OnlineNormalisation:
    """Per-series statistics of unseen series, learned from their first `warmup` windows."""

    def __init__(self, floor: np.ndarray, warmup: int, max_series: int, fleet: FeatureStats | None = None) -> None:
        self.floor = np.asarray(floor, dtype=np.float64)
        self.warmup = warmup
        self.max_series = max_series
        self.fleet = fleet
        """The statistics pooled over the training series: a new series that looks like them keeps them."""
        self._series: OrderedDict[str, _Running] = OrderedDict()

    def __len__(self) -> int:
        return len(self._series)

    def rows(self, series: Sequence[str], batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k, F) means and stds for k raw windows (k, W, F) of unseen series, learning from them first,
        and (k,) whether each row's statistics are still provisional (its series' warm-up is not over).

        Rows are taken in order, so a series with several windows in one batch learns from each before
        the next one is normalised, exactly as if they had come in separate polls.
        """
        states = [self._state(name, batch.shape[2]) for name in series]
        means = np.array([state.mean for state in states]).reshape(len(states), batch.shape[2])
        stds = np.array([state.std for state in states]).reshape(len(states), batch.shape[2])
        provisional = np.zeros(len(states), dtype=bool)
        learning = [i for i, state in enumerate(states) if state.windows < self.warmup]
        if learning:  # robust moments (medians) only for windows that still teach their series something
            self._learn([states[i] for i in learning], batch[learning], learning, (means, stds, provisional))
        return means, stds, provisional

    def _learn(
        self,
        states: list[_Running],
        batch: np.ndarray,
        rows: list[int],
        out: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Learn from the windows of series still in their warm-up and write each row's statistics into
        `out` (means, stds, provisional) at `rows`. All series at once, in rounds: round r takes the r-th
        window of every series, so each series adds its windows in order, with the same arithmetic as one
        window at a time (a window after the end of the warm-up teaches nothing)."""
        window_means, window_vars = _robust_moments(batch)
        moments = np.stack((window_means, window_means**2, window_vars), axis=1)  # (k, 3, F)
        index: dict[int, int] = {}
        group = np.array([index.setdefault(id(state), len(index)) for state in states])
        owners = list({id(state): state for state in states}.values())  # in the order of `index`
        windows = np.array([state.windows for state in owners])
        sums = np.array([state.sums for state in owners])
        mean = np.array([state.mean for state in owners])
        std = np.array([state.std for state in owners])
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
            target = [rows[i] for i in taken.tolist()]
            means[target], stds[target] = mean[group[taken]], std[group[taken]]
            provisional[target] = windows[group[taken]] < self.warmup
        for k, state in enumerate(owners):
            state.windows, state.sums = int(windows[k]), sums[k].copy()
            state.mean, state.std = mean[k].copy(), std[k].copy()

    def snapshot(self, name: str) -> dict[str, Any] | None:
        """What was learned about one series (None: nothing yet), for a checkpoint (`monitor.service.checkpoint`)."""
        state = self._series.get(name)
        return None if state is None else {"windows": state.windows, "sums": state.sums.copy()}

    def restore(self, name: str, state: Mapping[str, Any]) -> None:
        """Take a series back from `snapshot`; ValueError if it has another number of features."""
        sums = np.asarray(state["sums"], dtype=np.float64)
        if sums.shape != (3, len(self.floor)):
            raise ValueError(f"online normalisation of shape {sums.shape}, expected (3, {len(self.floor)})")
        self._state(name, len(self.floor))  # evicts the least recently used series beyond max_series
        self._series[name] = self._settled(int(state["windows"]), sums.copy())

    def inherit(self, previous: OnlineNormalisation, known: set[str] | frozenset[str] = frozenset()) -> None:
        """Take over what `previous` learned (a hot reload), except for series the new model knows."""
        for name, state in previous._series.items():
            if name not in known and state.sums.shape[1] == len(self.floor):
                self._series[name] = self._settled(state.windows, state.sums.copy())
        while len(self._series) > self.max_series:
            self._series.popitem(last=False)

    def _settled(self, windows: int, sums: np.ndarray) -> _Running:
        """A series' state rebuilt from its sums (a checkpoint, a hot reload), settled if its warm-up is over."""
        state = _Running.of(windows, sums, self.floor)
        if windows >= self.warmup:
            state.mean, state.std = self._settled_stats(state.mean, state.std)
        return state

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
        like = (np.abs(mean - fleet_mean) <= FLEET_MEANS * fleet_std) & (
            np.abs(np.log(std / fleet_std)) <= np.log(FLEET_SCALE)
        )
        return np.where(like, fleet_mean, mean), np.where(like, fleet_std, std)

    def _state(self, name: str, n_features: int) -> _Running:
        state = self._series.get(name)
        if state is not None:
            self._series.move_to_end(name)
            return state
        if len(self._series) >= self.max_series:
            self._series.popitem(last=False)
        state = self._series[name] = _Running.of(0, np.zeros((3, n_features)), self.floor)
        return state


def _estimate(sums: np.ndarray, windows: np.ndarray | int, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd from (..., 3, F) sums over `windows` windows (law of total variance), sd at least `floor`."""
    scaled = sums / np.asarray(windows, dtype=np.float64)[..., None, None]
    mean_of_means, sq_mean, within = scaled[..., 0, :], scaled[..., 1, :], scaled[..., 2, :]
    return mean_of_means, np.maximum(np.sqrt(np.maximum(within + sq_mean - mean_of_means**2, 0.0)), floor)


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
