"""Training data: points from JSON-lines or CSV files (or any decoded messages), grouped into series arrays.

Files and topic ranges go through the decoder of the configured `input.format`, the daemon's own, so a
capture of the metrics topic (or the topic itself) trains as it is, whatever its producer. CSV files have a
header with `timestamp` and `value` (NAB's layout) and optionally `series`; timestamps without a zone are
taken as UTC.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from monitor.errors import InputError
from monitor.formats import Decoder
from monitor.formats.native import decode_json
from monitor.records import UNIVARIATE, Message, Point, Rejected

log = logging.getLogger(__name__)

SeriesArrays = dict[str, tuple[np.ndarray, np.ndarray]]
"""Series id → (timestamps (T,), values (T, F)), sorted by time."""


def read_points(path: str | Path, decode: Decoder = decode_json) -> Iterator[Point]:
    """Points of a `.csv` file or of a file with one message per line; bad lines are logged and skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        yield from _csv_points(path)
        return
    with path.open("rb") as f:
        messages = (Message(line, None, str(path), 0, n) for n, line in enumerate(f, 1) if line.strip())
        yield from decode_messages(messages, decode)


def decode_messages(messages: Iterable[Message], decode: Decoder = decode_json) -> Iterator[Point]:
    """Decode messages, logging a summary of the rejected ones by reason instead of stopping."""
    rejected: Counter[str] = Counter()
    for message in messages:
        decoded = decode(message.value, message.timestamp)
        if isinstance(decoded, Rejected):
            if not rejected:
                log.warning("%s@%d rejected: %s", message.topic, message.offset, decoded.detail)
            rejected[decoded.reason] += 1
        else:
            yield from decoded
    if rejected:
        log.warning("skipped %d messages that did not decode: %s", rejected.total(), dict(rejected))


def _csv_points(path: Path) -> Iterator[Point]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        if not {"timestamp", "value"} <= columns:
            raise InputError(f"{path}: CSV needs a header with timestamp and value, got {sorted(columns)}")
        default_series = path.stem
        for line, row in enumerate(reader, start=2):
            try:
                ts, value = parse_csv_timestamp(row["timestamp"]), float(row["value"])
            except ValueError as exc:
                raise InputError(f"{path}:{line}: {exc}") from None
            yield Point(row.get("series") or default_series, ts, {UNIVARIATE: value})


def parse_csv_timestamp(text: str) -> float:
    """Unix seconds, or an ISO 8601 date-time (UTC unless it names a zone)."""
    try:
        return float(text)
    except ValueError:
        moment = datetime.fromisoformat(text.strip())
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def group_series(
    points: Iterable[Point],
    features: Sequence[str],
    start: float | None = None,
    end: float | None = None,
    exclude: Sequence[tuple[float, float]] = (),
) -> SeriesArrays:
    """Arrays per series within [start, end), without excluded ranges, sorted, duplicates dropped.

    Points lacking a feature are skipped: a model is trained on complete rows only.
    """
    rows: dict[str, list[tuple[float, list[float]]]] = defaultdict(list)
    for p in points:
        if (start is not None and p.ts < start) or (end is not None and p.ts >= end):
            continue
        if any(lo <= p.ts < hi for lo, hi in exclude):
            continue
        if all(f in p.values for f in features):
            rows[p.series].append((p.ts, [p.values[f] for f in features]))
    result: SeriesArrays = {}
    for series, items in rows.items():
        items.sort(key=lambda item: item[0])
        ts = np.array([t for t, _ in items])
        keep = np.concatenate(([True], np.diff(ts) > 0))
        result[series] = (ts[keep], np.array([v for _, v in items], dtype=np.float64)[keep])
    return result
