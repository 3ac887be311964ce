"""One PNG per replayed file: what the detector saw, what it scored, and where it alerted.

Top: the values (several features each standardised on the training rows, so they share one axis), the
labelled rows (red band), the training rows (grey band) and the alerts (red markers). Bottom: the
detector's score and threshold on a log scale, so a reader can see why an alert fired or did not, and the
rows while an alert is open (orange band). matplotlib is imported here only, with the Agg backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from monitor.evaluation.outliers import runs
from monitor.evaluation.replay import Replay


def plot_replay(result: Replay, out: Path) -> Path:
    """Write `out/<the file's relative path>.png` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    file = result.file
    when = [datetime.fromtimestamp(t, tz=UTC) for t in file.ts]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 6), sharex=True, height_ratios=(3, 2))
    try:
        values = _shown(file.values, file.train_rows)
        for column, feature in zip(values.T, file.features, strict=True):
            top.plot(when, column, lw=0.6, label=feature, **({"color": "#1f4e79"} if values.shape[1] == 1 else {}))
        for axis in (top, bottom):
            axis.axvspan(when[0], when[max(file.train_rows - 1, 0)], color="0.85", lw=0)
            for first, last in file.labelled.windows:
                axis.axvspan(when[first], when[last], color="#f4b6b6", alpha=0.6, lw=0)
        for first, last in runs(result.active):
            bottom.axvspan(when[first], when[last], color="#ffd8a8", alpha=0.6, lw=0)
        alerts = np.flatnonzero(result.alert)
        marks = values[alerts].max(axis=1) if len(alerts) else []
        top.scatter([when[i] for i in alerts], marks, color="#c00000", s=30, zorder=3, label="alert")
        top.set_title(f"{file.name}: {len(alerts)} alerts, {len(file.labelled.windows)} labelled windows", fontsize=10)
        top.legend(loc="upper left", fontsize=7, ncol=min(values.shape[1] + 1, 5))
        positive = np.where(result.score > 0, result.score, np.nan)
        bottom.semilogy(when, positive, lw=0.5, color="#404040", label="score")
        bottom.semilogy(when, result.threshold, lw=0.8, color="#e07000", label="threshold")
        bottom.scatter([when[i] for i in alerts], positive[alerts], color="#c00000", s=20, zorder=3)
        bottom.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        target = (out / file.name.removesuffix(".csv")).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=90)
    finally:
        plt.close(fig)
    return target


def _shown(values: np.ndarray, train_rows: int) -> np.ndarray:
    """One feature as it is; several standardised by their training rows, so each one's change is visible."""
    if values.shape[1] == 1:
        return values
    head = values[: max(train_rows, 2)]
    return (values - head.mean(axis=0)) / np.where(head.std(axis=0) > 0, head.std(axis=0), 1.0)
