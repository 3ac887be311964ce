"""monitor.logs: structured events as `name k=v` text and as JSON objects with the fields as keys."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from monitor.logs import JsonFormatter, event


@pytest.fixture
def logged() -> tuple[logging.Logger, io.StringIO, io.StringIO]:
    """A logger writing each record twice: through the text format and through the JSON one."""
    text, json_out = io.StringIO(), io.StringIO()
    logger = logging.getLogger("test.logs")
    logger.handlers[:] = [logging.StreamHandler(text), logging.StreamHandler(json_out)]
    logger.handlers[1].setFormatter(JsonFormatter())
    logger.propagate, logger.level = False, logging.INFO
    return logger, text, json_out


def test_an_event_is_one_line_in_text_and_one_object_in_json(logged):
    logger, text, json_out = logged
    event(logger, "alert", status="firing", series="web 01/cpu", score=2.2892451, attempt=3, detail="")
    assert text.getvalue() == 'alert status=firing series="web 01/cpu" score=2.28925 attempt=3 detail=""\n'
    entry = orjson.loads(json_out.getvalue())
    assert entry.pop("ts") > 0
    assert entry == {
        "level": "info",
        "logger": "test.logs",
        "message": 'alert status=firing series="web 01/cpu" score=2.28925 attempt=3 detail=""',
        "event": "alert",
        "status": "firing",
        "series": "web 01/cpu",
        "score": 2.2892451,
        "attempt": 3,
        "detail": "",
    }


def test_fields_never_overwrite_the_standard_keys_and_odd_values_still_serialise(logged):
    logger, _, json_out = logged
    event(logger, "odd", logging.WARNING, message="mine", path=io)
    entry = orjson.loads(json_out.getvalue())
    assert entry["level"] == "warning" and entry["message"].startswith("odd message=mine")
    assert entry["path"] == str(io)


def test_plain_records_and_exceptions_in_json(logged):
    logger, _, json_out = logged
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed %s", "here")
    entry = orjson.loads(json_out.getvalue())
    assert entry["message"] == "failed here" and "event" not in entry
    assert "ValueError: boom" in entry["exception"]
