"""Logging set-up: readable text for people, one JSON object per line for log shippers.

Alerts and lifecycle events (started, model loaded, ready, stopping, stopped...) go through `event`:
one line each, `name key=value ...` in text, and the same fields as top-level keys in JSON, so a log
shipper can index them without parsing the message.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        name = getattr(record, "event_name", None)
        if name is not None:
            entry["event"] = name
            entry.update((k, v) for k, v in record.event_fields.items() if k not in entry)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: `name k=v ...` for people, `"event": name` plus the fields in JSON."""
    text = " ".join([name, *(f"{key}={_text(value)}" for key, value in fields.items())])
    logger.log(level, text, extra={"event_name": name, "event_fields": fields})


def _text(value: Any) -> str:
    """Values that would split the line or look like another field are quoted, JSON style."""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return orjson.dumps(text).decode()
    return text


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Logs go to stderr, so stdout stays free for data (alerts of `run --input`, produced points)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # library warnings become records too: JSON mode stays one object per line
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
