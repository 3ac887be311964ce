"""Detection quality of replayed files: NAB scores per profile plus event precision, recall and delay,
or for a labelled CSV corpus SKAB's outlier scores beside the event view (`outliers`).

Two NAB protocols, printed as one table each (overall and per category):

- deployed: the detections are the rows where the monitor published a firing alert, with its own
  thresholds and alert rules. This is what a user of the shipped configuration gets.
- scoreboard: NAB's protocol, one threshold per profile swept over `anomaly_score` across all files,
  comparable with NAB's published scoreboard.

An event is a run of consecutive detected rows; it is true when it overlaps a labelled window. Recall is
the share of windows with a detection, the delay of a detected window is the distance from its first row
to its first detection as a share of its length (NAB weighs detections by exactly that position).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.evaluation.nab import Labelled, Profile, normalised, score_detections, sweep
from monitor.evaluation.outliers import Counts, Events, counts, events, runs

OVERALL = "overall"


@dataclass(slots=True)
class Group:
    """Totals over some files for one protocol."""

    name: str
    files: int = 0
    windows: int = 0
    raw: dict[str, float] = field(default_factory=dict)
    detected: int = 0
    events: int = 0
    true_events: int = 0
    delays: list[float] = field(default_factory=list)

    def score(self, profile: Profile) -> float:
        return normalised(self.raw.get(profile.name, 0.0), self.windows, profile)

    @property
    def precision(self) -> float:
        return self.true_events / self.events if self.events else math.nan

    @property
    def recall(self) -> float:
        return self.detected / self.windows if self.windows else math.nan


@dataclass(frozen=True, slots=True)
class Table:
    """One protocol's groups (overall first, then categories) and the thresholds it used per profile."""

    title: str
    groups: tuple[Group, ...]
    thresholds: dict[str, float] | None = None


def deployed(files: Sequence[Labelled], alerts: Sequence[np.ndarray], profiles: Sequence[Profile]) -> Table:
    """Scores of the alert rows: the same detections for every profile."""
    by_profile = {p.name: list(alerts) for p in profiles}
    return _table("deployed: the monitor's own alerts (its thresholds and alert rules)", files, by_profile, profiles)


def scoreboard(files: Sequence[Labelled], scores: Sequence[np.ndarray], profiles: Sequence[Profile]) -> Table:
    """NAB's protocol: per profile, the best single threshold on the scores of all files."""
    thresholds = {p.name: sweep(files, scores, p)[0] for p in profiles}
    by_profile = {p.name: [s >= thresholds[p.name] for s in scores] for p in profiles}
    return _table("scoreboard: NAB protocol, one threshold per profile", files, by_profile, profiles, thresholds)


def _table(
    title: str,
    files: Sequence[Labelled],
    detections: dict[str, list[np.ndarray]],
    profiles: Sequence[Profile],
    thresholds: dict[str, float] | None = None,
) -> Table:
    """Groups for overall and each category; event figures use the first profile's detections."""
    categories = sorted({f.category for f in files})
    groups = {name: Group(name) for name in (OVERALL, *categories)}
    for i, labelled in enumerate(files):
        for group in (groups[OVERALL], groups[labelled.category]):
            _add(group, labelled, {p.name: detections[p.name][i] for p in profiles}, profiles)
    return Table(title, tuple(groups.values()), thresholds)


def _add(group: Group, labelled: Labelled, detections: dict[str, np.ndarray], profiles: Sequence[Profile]) -> None:
    group.files += 1
    for profile in profiles:
        result = score_detections(labelled, detections[profile.name], profile)
        group.raw[profile.name] = group.raw.get(profile.name, 0.0) + result.raw
    first = detections[profiles[0].name]
    probation = labelled.probation
    scored_windows = [(a, b) for a, b in labelled.windows if b >= probation]
    group.windows += len(scored_windows)
    found = runs(first, probation)
    group.events += len(found)
    group.true_events += sum(any(s <= b and e >= a for a, b in scored_windows) for s, e in found)
    for a, b in scored_windows:
        hits = np.flatnonzero(first[max(a, probation) : b + 1])
        if len(hits):
            group.detected += 1
            group.delays.append((max(a, probation) + int(hits[0]) - a) / (b - a + 1))


def format_table(table: Table, profiles: Sequence[Profile]) -> str:
    """A fixed-width text table; scores are NAB-normalised (null 0, perfect 100), '-' without windows."""
    names = [p.name.replace("reward_low_", "low ").replace("_rate", "") for p in profiles]
    header = f"{'':<24}{'files':>6}{'windows':>8}" + "".join(f"{n:>10}" for n in names)
    header += f"{'recall':>9}{'precision':>10}{'events':>7}{'delay':>7}"
    lines = [table.title]
    if table.thresholds:
        pairs = zip(names, profiles, strict=True)
        lines.append("thresholds: " + ", ".join(f"{n} {table.thresholds[p.name]:.6g}" for n, p in pairs))
    lines.append(header)
    for g in table.groups:
        row = f"{g.name:<24}{g.files:>6}{g.windows:>8}" + "".join(f"{_num(g.score(p), '.1f'):>10}" for p in profiles)
        recall = f"{g.detected}/{g.windows}" if g.windows else "-"
        delay = f"{100 * float(np.median(g.delays)):.0f}%" if g.delays else "-"
        row += f"{recall:>9}{_num(g.precision, '.2f'):>10}{g.events:>7}{delay:>7}"
        lines.append(row)
    return "\n".join(lines)


def _num(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


@dataclass(slots=True)
class OutlierRow:
    """Outlier counts and events of some files' test rows (overall, or one file)."""

    name: str
    files: int = 0
    counts: Counts = field(default_factory=Counts)
    events: Events = field(default_factory=Events)


def outlier_rows(
    names: Sequence[str],
    labels: Sequence[np.ndarray],
    active: Sequence[np.ndarray],
    alerts: Sequence[np.ndarray],
    ts: Sequence[np.ndarray],
) -> list[OutlierRow]:
    """The pooled row and one row per file; every array holds one file's test rows only."""
    overall = OutlierRow(OVERALL)
    rows = [overall]
    for name, *arrays in zip(names, labels, active, alerts, ts, strict=True):
        file_labels, file_active, file_alerts, file_ts = arrays
        row = OutlierRow(name, 1, counts(file_labels, file_active), events(file_labels, file_alerts, file_ts))
        overall.files += 1
        overall.counts += row.counts
        overall.events.add(row.events)
        rows.append(row)
    return rows


def format_outliers(rows: Sequence[OutlierRow]) -> str:
    """SKAB's outlier scores (a test row is predicted while an alert is open) and the event view."""
    lines = [
        "outliers: the test rows of all files pooled, a row predicted while an alert is open (SKAB's scores);",
        "events: labelled periods found by an alert starting inside them, median delay, alerts starting outside",
        f"{'':<24}{'files':>6}{'rows':>7}{'TP':>6}{'FP':>6}{'FN':>6}{'TN':>6}{'F1':>7}{'FAR %':>7}{'MAR %':>7}"
        f"{'found':>8}{'delay s':>8}{'outside':>8}",
    ]
    for r in rows:
        c, e = r.counts, r.events
        line = f"{r.name:<24}{r.files:>6}{c.tp + c.fp + c.fn + c.tn:>7}{c.tp:>6}{c.fp:>6}{c.fn:>6}{c.tn:>6}"
        line += f"{_num(c.f1, '.3f'):>7}{_num(100 * c.far, '.1f'):>7}{_num(100 * c.mar, '.1f'):>7}"
        line += f"{f'{e.found}/{e.periods}':>8}{_num(e.median_delay, '.0f'):>8}{e.outside:>8}"
        lines.append(line)
    return "\n".join(lines)


def format_false_alerts(labels: Sequence[np.ndarray], alerts: Sequence[np.ndarray], ts: Sequence[np.ndarray]) -> str:
    """Firing alerts on rows outside the labelled anomalies, per 1,000 series-hours of those rows: the
    pages an operator of a fleet would get for nothing. Every array holds one file's scored rows only;
    a row stands for the file's median step."""
    false = sum(int(np.count_nonzero(a & ~lab)) for lab, a in zip(labels, alerts, strict=True))
    hours = sum(
        np.count_nonzero(~lab) * float(np.median(np.diff(t))) / 3600
        for lab, t in zip(labels, ts, strict=True)
        if len(t) > 1
    )
    rate = 1000 * false / hours if hours else float("nan")
    return (
        f"false alerts: {false} firing outside labelled anomalies in {hours:,.1f} series-hours: "
        f"{_num(rate, '.1f')} per 1,000 series-hours"
    )
