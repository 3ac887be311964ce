"""The training report written next to each model version: what an operator checks before rolling it out.

`report.md` states the data range used (and what was left out), the options, how training went and the
threshold every series starts from; `loss.png` shows the loss curves (did it converge, did it stop
early, does validation track training); `validation_errors.png` shows the healthy validation scores with
that threshold (a long right tail means alerts on normal data). matplotlib is imported here only, with
the Agg backend, and only when a report is written.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.records import format_ts

if TYPE_CHECKING:
    from monitor.models.metadata import ModelMetadata

REPORT_FILES = ("report.md", "loss.png", "validation_errors.png")


def suggested_threshold(validation_scores: np.ndarray, k: float) -> float:
    """mean + k·sd of the validation scores: where every series' threshold starts before it learns."""
    scores = np.asarray(validation_scores, dtype=np.float64)
    return float(scores.mean() + k * scores.std()) if len(scores) else float("nan")


def render(metadata: ModelMetadata, k: float) -> dict[str, bytes]:
    """The report files by name; `k` is the detector's threshold.k."""
    scores = np.asarray(metadata.validation_scores, dtype=np.float64)
    threshold = suggested_threshold(scores, k)
    return {
        "report.md": _markdown(metadata, scores, k, threshold).encode(),
        "loss.png": _loss_png(metadata),
        "validation_errors.png": _histogram_png(metadata, scores, threshold),
    }


def _markdown(metadata: ModelMetadata, scores: np.ndarray, k: float, threshold: float) -> str:
    r, t = metadata.data_range, metadata.training
    options: Mapping[str, Any] = t.get("options", {})
    excluded = r.get("excluded") or []
    lines = [
        f"# Model {metadata.version}",
        "",
        f"- kind: `{metadata.kind}`, score: `{metadata.score_method}`, window {metadata.window}, "
        f"features {list(metadata.features)}, calendar inputs {list(metadata.calendar) or 'none'} "
        f"(setting `{options.get('calendar')}`)",
        f"- sizes: hidden {metadata.hidden}, latent {metadata.latent}, layers {metadata.layers}",
        f"- options: denoising `{options.get('denoising')}` (noise {options.get('noise')}), "
        f"sparse {options.get('sparse')}, kl_weight {options.get('kl_weight')}, ema {options.get('ema', 0.0)}, "
        f"seed {t.get('seed')}, "
        f"device `{options.get('device')}`",
        f"- created: {metadata.created_at}",
        "",
        "## Data",
        "",
        f"- source: {r.get('source', 'unknown')}",
        f"- range: {format_ts(r['start'])} to {format_ts(r['end'])}: {r['points']} points in {r['series']} series",
        f"- excluded: {', '.join(f'{format_ts(a)} to {format_ts(b)}' for a, b in excluded) or 'nothing'}",
        f"- windows: {t.get('train_windows')} for training, {t.get('validation_windows')} for validation "
        "(each series' most recent part)",
        "",
        "## Training",
        "",
        f"- epochs: {t.get('epochs_run')} run, best {t.get('best_epoch')} (early stopping after "
        f"{options.get('patience')} without improvement), {t.get('seconds')} s",
        f"- validation MSE: {t.get('initial_val_loss', float('nan')):.6g} untrained, "
        f"{t.get('val_loss', float('nan')):.6g} best",
        "",
        "## Threshold",
        "",
        f"- suggested threshold: **{threshold:.6g}** (mean + {k:g}·sd of {len(scores)} validation scores; "
        "every series starts from it and then follows its own recent scores)",
        f"- validation scores: median {_q(scores, 50)}, p99 {_q(scores, 99)}, max {_q(scores, 100)}",
        "",
        "![loss](loss.png)",
        "![validation errors](validation_errors.png)",
        "",
    ]
    return "\n".join(lines)


def _q(scores: np.ndarray, q: float) -> str:
    return f"{np.percentile(scores, q):.6g}" if len(scores) else "n/a"


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(plt: Any, fig: Any) -> bytes:
    buffer = io.BytesIO()
    try:
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.92)  # tight_layout costs a second
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _loss_png(metadata: ModelMetadata) -> bytes:
    plt = _figure()
    t = metadata.training
    fig, axis = plt.subplots(figsize=(7, 4))
    curves = {"training objective": t.get("train_losses") or [], "validation MSE": t.get("val_losses") or []}
    for label, values in curves.items():
        axis.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=label)
    if t.get("best_epoch"):
        axis.axvline(t["best_epoch"], color="0.5", ls="--", lw=1, label=f"best epoch {t['best_epoch']}")
    # A vae's objective includes a log-likelihood and can go below zero, where a log scale cannot follow.
    axis.set_yscale("log" if all(v > 0 for values in curves.values() for v in values) else "linear")
    axis.set_xlabel("epoch")
    axis.set_title(f"{metadata.version}: loss", fontsize=10)
    axis.legend(fontsize=8)
    return _png(plt, fig)


def _histogram_png(metadata: ModelMetadata, scores: np.ndarray, threshold: float) -> bytes:
    plt = _figure()
    fig, axis = plt.subplots(figsize=(7, 4))
    if len(scores):
        axis.hist(scores, bins=min(60, max(10, len(scores) // 10)), color="#1f4e79")
        axis.axvline(threshold, color="#e07000", lw=1.5, label=f"suggested threshold {threshold:.4g}")
        axis.legend(fontsize=8)
    axis.set_xlabel(f"validation score ({metadata.score_method})")
    axis.set_ylabel("windows")
    axis.set_title(f"{metadata.version}: validation error", fontsize=10)
    return _png(plt, fig)
