"""Logging set-up: readable text for people, one JSON object per line for log shippers.

Alerts and lifecycle events (started, model loaded, ready, stopping, stopped...) go through `event`:
one line each, `name key=value ...` in text, and the same fields as top-level keys in JSON, so a log
shipper can index them without parsing the message.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
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


class Hush(logging.Filter):
    """Holds back a library's WARNING and ERROR records while the monitor reports their cause itself, and
    counts them. kafka-python logs about a dozen ERROR lines a second while no broker answers; its first
    ERROR passes and starts the holding (`auto`), the run loop logs one `broker_error` line when it
    notices, `/readyz` says why, and `release`, once the broker answers, gives the count for one line.
    Outside `hold`..`release` every record passes, so no error is hidden in normal running."""

    def __init__(self, logger: str, auto: bool = True) -> None:
        super().__init__()
        self.logger, self.auto = logger, auto
        self._since: float | None = None
        self._lock = threading.Lock()
        self._holding = False
        self._held = 0
        self._first: str | None = None
        self._first_level = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if record.name != self.logger and not record.name.startswith(self.logger + "."):
            return True
        if not self._holding:
            if self.auto and record.levelno >= logging.ERROR:
                self.hold()
            return True
        with self._lock:
            self._held += 1
            if record.levelno > self._first_level:  # the first of the most severe: an error over a warning
                self._first, self._first_level = record.getMessage(), record.levelno
        return False

    def hold(self) -> bool:
        """Start holding back; False (and nothing changes) when already holding."""
        with self._lock:
            if self._holding:
                return False
            self._holding, self._held, self._first, self._first_level = True, 0, None, 0
            self._since = time.monotonic()
            return True

    def holding_since(self) -> float | None:
        """`time.monotonic()` when the holding began; None when not holding."""
        return self._since if self._holding else None

    def release(self) -> tuple[int, str | None]:
        """Stop holding back: how many records were held, and the first of the most severe of them."""
        with self._lock:
            self._holding, self._since = False, None
            return self._held, self._first


CLIENT_LOGS = Hush("kafka")
"""kafka-python's records, held back during a broker outage (`Hush`); on every handler `setup_logging` makes."""


class SlowTaskFilter(logging.Filter):
    """Lets through the first of kafka-python's "Task ... ran for 0.1xx s (>0.100s threshold)" warnings,
    with a note, and drops the rest.

    kafka-python's event loop warns whenever one of its own I/O steps runs over 0.1 s; on a busy host that
    is every few seconds in steady state (346 lines in 15 minutes in issue 18's fleet run), burying the
    monitor's own warnings, and nothing is wrong. Every other record of kafka-python, errors and its
    other warnings included, passes; `--log-level DEBUG` does not install the filter at all.
    """

    PATTERN = re.compile(r"Task .* ran for [0-9.]+s \(>[0-9.]+s threshold\)")

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or not record.name.startswith("kafka."):
            return True
        message = record.getMessage()
        if not self.PATTERN.match(message):
            return True
        self.dropped += 1
        if self.dropped > 1:
            return False
        record.msg, record.args = f"{message} (kafka-python's I/O loop; further ones are not logged)", None
        return True


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Logs go to stderr, so stdout stays free for data (alerts of `run --input`, produced points)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CLIENT_LOGS)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if logging.getLevelName(level) != logging.DEBUG:
        handler.addFilter(SlowTaskFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # library warnings become records too: JSON mode stays one object per line
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
