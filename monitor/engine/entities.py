"""Which series a detector takes (a glob and labels), and multivariate entities built from univariate series.

A detector scores one entity per window: a series of `values` points (`{"cpu": .., "mem": ..}`), or,
with `entity_label`, several univariate series joined by a label. With `entity_label: host` and
`features: [cpu, mem, rps]`, the points of `web-01/cpu`, `web-01/mem` and `web-01/rps` that carry
`host: web-01` become one entity `web-01`: the feature is the last `/` segment of the series id, and a
row is complete when every feature has a value at the same timestamp. Rows wait for their missing
features for at most `MAX_PENDING_ROWS` timestamps per entity; a row that never completes, or is
overtaken by a newer complete one, is dropped and counted as `incomplete_row`.

No torch here: the engine and `monitor train` both use it, so training sees entities exactly as the
daemon builds them.
"""

from __future__ import annotations

import fnmatch
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.records import UNIVARIATE, Point

MAX_PENDING_ROWS = 16


@dataclass(frozen=True, slots=True)
class Selector:
    """A glob over series ids, labels that must all be equal, and (for entities) the grouping label."""

    series: str = "*"
    labels: tuple[tuple[str, str], ...] = ()
    entity_label: str | None = None
    features: tuple[str, ...] = (UNIVARIATE,)

    @property
    def everything(self) -> bool:
        """Whether every series matches, whatever its id and labels (`*`, no labels, no entity label)."""
        return self.series == "*" and not self.labels and self.entity_label is None

    def matches(self, series: str, labels: Mapping[str, str]) -> bool:
        if not fnmatch.fnmatchcase(series, self.series):
            return False
        if any(labels.get(key) != value for key, value in self.labels):
            return False
        if self.entity_label is None:
            return True
        return bool(labels.get(self.entity_label)) and feature_of(series) in self.features


def feature_of(series: str) -> str:
    """The feature a univariate series contributes to its entity: the last `/` segment of its id."""
    return series.rsplit("/", 1)[-1]


class EntityAssembler:
    """Joins univariate points into entity points, one complete row (every feature, one timestamp) at a time.

    At most `max_entities` entities wait for rows; the least recently updated one is forgotten first.
    """

    def __init__(self, entity_label: str, features: Sequence[str], max_entities: int) -> None:
        self.entity_label = entity_label
        self.features = tuple(features)
        self.max_entities = max_entities
        self.dropped: Counter[str] = Counter()
        self._pending: OrderedDict[str, OrderedDict[float, dict[str, float]]] = OrderedDict()

    def entity_of(self, point: Point) -> str:
        """The entity a point of a selected series joins: the value of its `entity_label` (also the key of
        the entity's state in a checkpoint)."""
        return point.labels[self.entity_label]

    def add(self, point: Point) -> Point | None:
        """Take one univariate point (already selected); returns the entity point it completes, if any."""
        value = point.values.get(UNIVARIATE)
        if value is None:
            self.dropped["not_univariate"] += 1
            return None
        entity = self.entity_of(point)
        rows = self._rows(entity)
        row = rows.setdefault(point.ts, {})
        row[feature_of(point.series)] = value
        if len(row) < len(self.features):
            while len(rows) > MAX_PENDING_ROWS:
                rows.popitem(last=False)
                self.dropped["incomplete_row"] += 1
            return None
        for ts in [ts for ts in rows if ts <= point.ts]:
            if rows.pop(ts) is not row:
                self.dropped["incomplete_row"] += 1
        return Point(entity, point.ts, {f: row[f] for f in self.features}, point.labels)

    def snapshot(self, entity: str) -> list[list[Any]]:
        """The rows still waiting for features, oldest first, for a checkpoint: without them a restored
        entity would never complete the rows whose other features arrived before the restart."""
        return [[ts, dict(row)] for ts, row in self._pending.get(entity, {}).items()]

    def restore(self, entity: str, rows: Sequence[Sequence[Any]]) -> None:
        self.forget(entity)
        if rows:
            pending = self._rows(entity)
            for ts, row in rows:
                pending[float(ts)] = {str(f): float(v) for f, v in row.items()}

    def forget(self, entity: str) -> None:
        self._pending.pop(entity, None)

    def _rows(self, entity: str) -> OrderedDict[float, dict[str, float]]:
        rows = self._pending.get(entity)
        if rows is not None:
            self._pending.move_to_end(entity)
            return rows
        if len(self._pending) >= self.max_entities:
            _, forgotten = self._pending.popitem(last=False)
            self.dropped["incomplete_row"] += len(forgotten)
        rows = self._pending[entity] = OrderedDict()
        return rows
