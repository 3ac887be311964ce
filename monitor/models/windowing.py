"""Cutting and thinning arrays of windows, shared by training and scoring so both see windows alike."""

from __future__ import annotations

import numpy as np


def sliding_windows(values: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Every `stride`-th window of `window` consecutive rows of `values` (T, F), as a (N, window, F) copy.

    A series shorter than `window` gives zero windows rather than an error: the caller decides whether
    that matters.
    """
    if len(values) < window:
        return np.empty((0, window, values.shape[1]), dtype=values.dtype)
    views = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (N, F, window)
    return np.ascontiguousarray(views[::stride].transpose(0, 2, 1))


def subsample_evenly(items: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` items, spread evenly over the whole array so no part of the time range is lost."""
    if len(items) <= limit:
        return items
    picks = np.linspace(0, len(items) - 1, limit).round().astype(np.int64)
    return items[picks]
