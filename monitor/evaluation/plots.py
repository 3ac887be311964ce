"""One PNG per replayed file: what the detector saw, what it scored, and where it alerted.

Top: the values, the labelled windows (red band), the probationary rows the model was trained on (grey
band) and the alerts (red markers). Bottom: the detector's score and threshold on a log scale, so a
reader can see why an alert fired or did not. matplotlib is imported here only, with the Agg backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from monitor.evaluation.replay import Replay


def plot_replay(result: Replay, out: Path) -> Path:
    """Write `out/<category>/<file>.png` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    file, labelled = result.file, result.file.labelled
    when = [datetime.fromtimestamp(t, tz=UTC) for t in file.ts]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 6), sharex=True, height_ratios=(3, 2))
    try:
        top.plot(when, file.values, lw=0.6, color="#1f4e79", label="value")
        for axis in (top, bottom):
            axis.axvspan(when[0], when[max(labelled.probation - 1, 0)], color="0.85", lw=0)
            for first, last in labelled.windows:
                axis.axvspan(when[first], when[last], color="#f4b6b6", alpha=0.6, lw=0)
        alerts = np.flatnonzero(result.alert)
        top.scatter([when[i] for i in alerts], file.values[alerts], color="#c00000", s=30, zorder=3, label="alert")
        top.set_title(f"{file.name}: {len(alerts)} alerts, {len(labelled.windows)} labelled windows", fontsize=10)
        top.legend(loc="upper left", fontsize=8)
        positive = np.where(result.score > 0, result.score, np.nan)
        bottom.semilogy(when, positive, lw=0.5, color="#404040", label="score")
        bottom.semilogy(when, result.threshold, lw=0.8, color="#e07000", label="threshold")
        bottom.scatter([when[i] for i in alerts], positive[alerts], color="#c00000", s=20, zorder=3)
        bottom.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        target = out / file.name.removesuffix(".csv")
        target = target.with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=90)
    finally:
        plt.close(fig)
    return target
