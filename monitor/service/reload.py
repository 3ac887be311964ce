"""Hot reload: swap a new model version into a running detector without losing its windows or thresholds.

Every `model.reload_interval` seconds (and at once on SIGHUP) the loop thread, between two polls, compares
the `signature` of each detector's model path (a few `stat` calls, see `monitor.models.store`) with the
one it loaded. When it changed, the new artifact is loaded and checked: one that does not load, has
another window or feature list, or scores in other units (score method) is refused with one log line
naming both versions, and the current model keeps serving. Otherwise the detector swaps scorers; its
windows, threshold statistics and open alerts stay, as does what the old scorer learned online about
series the new model does not know. Alerts from then on carry the new version, and `monitor_model_info`
shows it.

Loading happens in the loop thread, so no window is scored half by one model and half by the other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.config import DetectorConfig
from monitor.engine.detector import Detector, Routed
from monitor.engine.scoring import Scorer
from monitor.engine.verdicts import Outcome
from monitor.errors import ModelError
from monitor.logs import event

log = logging.getLogger(__name__)

Loader = Callable[[Detector], Scorer]
"""Loads what a detector's model path serves now, ready to replace the detector's scorer."""


def load_scorer(
    config: DetectorConfig,
    threads: int,
    previous: Scorer | None = None,
    backend: str = "torch",
    max_batch: int = 256,
    device: str = "cpu",
) -> Any:
    """The `TorchScorer` of a detector's model path, as configured; with `previous`, ready to replace it.

    `backend`, `threads`, `max_batch` and `device` are the `scoring` section's (`Config.scoring_*`).
    """
    from monitor.models import TorchScorer

    model, settings = config.model, config.settings
    scorer = TorchScorer.from_path(
        model.path, threads, model.online_warmup, settings.max_series, backend, max_batch, device
    )
    if isinstance(previous, TorchScorer):
        if scorer.score_method != previous.score_method:
            raise ModelError(
                f"model {scorer.version} scores by {scorer.score_method}, {previous.version} by "
                f"{previous.score_method}: thresholds hold scores in the old units; restart the daemon to switch"
            )
        scorer.inherit(previous)
    return scorer


@dataclass(slots=True)
class _Watch:
    detector: Detector
    path: Path
    interval_s: float
    signature: object
    due: float


class ModelReloader:
    """A service task: checks model paths when due or asked (`request`, from SIGHUP) and swaps models."""

    def __init__(
        self,
        watched: Sequence[tuple[Detector, Path, float]],
        load: Loader,
        signature: Callable[[Path], object],
        on_swap: Callable[[Detector], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load, self._signature, self._on_swap, self._clock = load, signature, on_swap, clock
        now = clock()
        # No signature yet: the first check loads once and compares versions, so a version published
        # between the daemon's start-up load and this constructor is not missed.
        self._watches = [_Watch(d, path, interval, None, now + interval) for d, path, interval in watched]
        self._requested = False

    def request(self) -> None:
        """Check every path at the next step, changed or not. Safe in a signal handler (one assignment)."""
        self._requested = True

    def after_step(self, points: Sequence[Routed], outcome: Outcome) -> None:
        requested, self._requested = self._requested, False
        now = self._clock()
        for watch in self._watches:
            if requested or (watch.interval_s > 0 and now >= watch.due):
                watch.due = now + watch.interval_s
                self._check(watch, forced=requested)

    def _check(self, watch: _Watch, forced: bool) -> None:
        signature = self._signature(watch.path)
        if signature == watch.signature and not forced:
            return
        watch.signature = signature
        detector, current = watch.detector, watch.detector.scorer
        try:
            scorer = self._load(detector)
            if scorer.version == current.version:
                if forced:
                    event(log, "model_unchanged", detector=detector.settings.name, version=current.version)
                return
            detector.swap_scorer(scorer)
        except Exception as exc:  # any failure to load must leave the serving model alone
            event(
                log,
                "model_refused",
                logging.ERROR,
                detector=detector.settings.name,
                path=str(watch.path),
                serving=current.version,
                error=f"{type(exc).__name__}: {exc}" if not isinstance(exc, ModelError) else str(exc),
            )
            return
        self._on_swap(detector)
        event(
            log,
            "model_reloaded",
            detector=detector.settings.name,
            previous=current.version,
            version=scorer.version,
            kind=scorer.kind,
            path=str(watch.path),
        )
