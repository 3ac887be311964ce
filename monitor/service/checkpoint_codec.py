"""The checkpoint record: a page of series' engine states as bytes, exact to the last bit, and back.

JSON, so a person can read a changelog record with the console consumer. Arrays are base64 of their
float64 bytes, floats are written in their shortest exact form (orjson; non-finite ones tagged), so a
restored series computes exactly what it would have
computed without the restart, and the alerts of the two runs carry the same ids. Verdicts and alerts in
the alert state are tagged objects; anything else in a state is plain JSON.

A record is a page: the states of the series of one partition that share a page key (see
`monitor.service.checkpoint`), in one value. Records of the first schema (`monitor.state/v1`, one series
per record, keyed by the series) are still read, so a changelog written before pages restores.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import orjson

from monitor.records import Alert, Verdict

SCHEMA = "monitor.state/v2"
SERIES_SCHEMA = "monitor.state/v1"
"""One series per record, the record's key its name: written before pages, read still."""


@dataclass(frozen=True, slots=True)
class StateRecord:
    series: str
    detector: str
    partition: int
    offset: int
    """The offset after the last record of `partition` whose points are in `state`."""
    state: dict[str, Any]


def encode_page(records: Sequence[StateRecord]) -> bytes:
    """One value for the states of a page (all of one partition), as a copy of orjson's output: a bytes
    object from `orjson.dumps` keeps several KiB of heap while it lives (7.6 KiB for a 1.9 KB record,
    measured), and the sink holds every record of a checkpoint until the flush acknowledges it."""
    doc = {
        "schema": SCHEMA,
        "partition": records[0].partition,
        "series": {r.series: {"detector": r.detector, "offset": r.offset, "state": r.state} for r in records},
    }
    return bytes(memoryview(orjson.dumps(_finite(doc), default=_tag, option=orjson.OPT_PASSTHROUGH_DATACLASS)))


def decode_page(key: bytes, raw: bytes) -> list[StateRecord]:
    """The states of a page, or the one state of a first-schema record (whose key names its series).
    ValueError (or KeyError/TypeError for a wrong shape) when the bytes are neither."""
    doc = json.loads(raw, object_hook=_untag)
    schema = doc.get("schema")
    if schema == SERIES_SCHEMA:
        entries = {key.decode(errors="replace"): doc}
    elif schema == SCHEMA:
        entries = doc["series"]
    else:
        raise ValueError(f"not a {SCHEMA} record (schema {schema!r})")
    partition = int(doc["partition"])
    return [
        StateRecord(str(series), str(e["detector"]), partition, int(e["offset"]), e["state"])
        for series, e in entries.items()
    ]


_WHOLE = frozenset({int, str, bool, type(None), np.ndarray})
"""Types `_finite` passes on without a look inside (arrays go to `_tag` whole): most of a state's values,
and a record is encoded for every series at a clean stop."""


def _finite(value: Any) -> Any:
    """JSON has no inf or NaN (orjson would write null): such floats become tagged strings."""
    kind = type(value)
    if kind in _WHOLE:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _tag(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value, dtype="<f8")
        return {"__array__": list(data.shape), "f8": base64.b64encode(data.tobytes()).decode()}
    if isinstance(value, Verdict | Alert):
        return {f"__{type(value).__name__.lower()}__": _finite(asdict(value))}  # written as returned
    if isinstance(value, np.floating | np.integer):
        return _finite(value.item())  # orjson writes what `default` returns as it is: a NaN would be null
    raise TypeError(f"cannot checkpoint a {type(value).__name__}")


def _untag(doc: dict[str, Any]) -> Any:
    if "__float__" in doc:
        return float(doc["__float__"])
    if "__array__" in doc:
        flat = np.frombuffer(base64.b64decode(doc["f8"]), dtype="<f8")
        return flat.reshape(doc["__array__"]).astype(float)
    if "__verdict__" in doc:
        return _build(Verdict, doc["__verdict__"])
    if "__alert__" in doc:
        alert = doc["__alert__"]
        return _build(Alert, {**alert, "top_features": tuple((f, float(s)) for f, s in alert["top_features"])})
    return doc


def _build(cls: type, values: dict[str, Any]) -> Any:
    """A dataclass from its dict, ignoring fields this version does not know and defaulting new ones."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})
