"""monitor.logs: structured events as `name k=v` text and as JSON objects with the fields as keys."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from monitor.logs import CLIENT_LOGS, JsonFormatter, event, setup_logging


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


SLOW = "Task %r ran for %.3fs (>%.3fs threshold). It is blocking the event loop"


@pytest.mark.parametrize(("level", "slow_lines"), [("INFO", 1), ("DEBUG", 3)])
def test_kafka_pythons_slow_task_warnings_are_logged_once_at_the_default_level(level, slow_lines, capsys):
    """Issue 18: hundreds of these in steady state buried the monitor's own warnings; errors must still pass."""
    root, saved = logging.getLogger(), (logging.getLogger().level, logging.getLogger("kafka").level)
    setup_logging(level)
    try:
        kafka = logging.getLogger("kafka.net.selector")
        for elapsed in (0.123, 0.2, 0.15):
            kafka.warning(SLOW, "<Task poll>", elapsed, 0.1)
        kafka.warning("Node 1 connection failed")
        kafka.error("Task %r ran for %.3fs (>%.3fs threshold)", "<Task x>", 0.2, 0.1)
        logging.getLogger("monitor.test").warning("Task ran for 9s (>1s threshold), the monitor's own")
    finally:
        CLIENT_LOGS.release()  # kafka-python's first ERROR starts the outage hold-back (`Hush`)
        root.handlers[:] = []
        root.setLevel(saved[0])
        logging.getLogger("kafka").setLevel(saved[1])
    lines = capsys.readouterr().err.splitlines()
    assert sum(" WARNING kafka.net.selector: Task " in line for line in lines) == slow_lines
    assert any("further ones are not logged" in line for line in lines) == (level == "INFO")
    assert sum("Node 1 connection failed" in line for line in lines) == 1
    assert sum(" ERROR kafka.net.selector: Task" in line for line in lines) == 1
    assert sum("the monitor's own" in line for line in lines) == 1
