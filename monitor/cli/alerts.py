"""`monitor alerts`: the alert topic as a person reads it, or its raw messages for scripts.

It reads outside any consumer group, from the start of the topic, and stops at the end it found (exit 0)
unless `--follow` keeps it waiting for new alerts. The filters apply to the alert's own fields: `--since`
to its `at` (a data time, like every time in an alert), `--series` to its series id, `--status` to its
status.
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from monitor.config import load_config
from monitor.records import Message, parse_time

log = logging.getLogger(__name__)

HELP = "print the alerts on the alert topic (firing, resolved, dismissed), or follow them"
WORKFLOW = """\
the alert and feedback workflow:
  monitor alerts --status firing              every alert that fired: status, series, started, score
                                              (threshold), severity, top features, and its id
  monitor alerts --series 'web-*' --json      the raw monitor.alert/v1 messages, one per line
  monitor feedback ALERT_ID --false-positive --note "batch job"
                                              a verdict on the feedback topic: the daemon resolves the alert
                                              as dismissed and learns the pattern as normal for that series
  monitor feedback ALERT_ID --true-positive   confirms it (counted in monitor_feedback_total)
  monitor alerts --follow                     new alerts as they arrive; Ctrl-C stops
"""
STATUSES = ("firing", "resolved")


def add_arguments(alerts: argparse.ArgumentParser) -> None:
    alerts.formatter_class = argparse.RawDescriptionHelpFormatter
    alerts.description, alerts.epilog = __doc__.split("\n\n")[1], WORKFLOW
    alerts.add_argument("--topic", help="alert topic to read (default: kafka.alert_topic)")
    alerts.add_argument("--follow", "-f", action="store_true", help="keep waiting for new alerts (Ctrl-C stops)")
    alerts.add_argument(
        "--since",
        type=parse_time,
        metavar="TIME",
        help="only alerts whose time (`at`, a data time) is at or after TIME (Unix seconds or RFC 3339)",
    )
    alerts.add_argument("--series", metavar="GLOB", help="only series ids matching this shell pattern (host-0*/cpu)")
    alerts.add_argument("--status", choices=STATUSES, help="only firing or only resolved messages")
    alerts.add_argument("--json", action="store_true", help="print each message as it is on the topic, one per line")


def run(args: argparse.Namespace) -> int:
    from monitor.kafka.tools import read_range  # kafka-python only when the command runs

    kafka = load_config(args.config).kafka
    messages = read_range(kafka, args.topic or kafka.alert_topic, follow=args.follow)
    for raw, alert in selected(decoded(messages), args.since, args.series, args.status):
        print(raw.decode() if args.json else alert_line(alert), flush=True)
    return 0


def decoded(messages: Iterable[Message]) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Each message's bytes with its parsed alert; what is not an alert is logged and skipped."""
    for m in messages:
        alert = _alert(m.value or b"")
        if alert is None:
            log.warning("%s@%d/%d is not an alert, skipped", m.topic, m.partition, m.offset)
        else:
            yield m.value or b"", alert


def _alert(value: bytes) -> dict[str, Any] | None:
    """The message as an alert object with the fields the filters read (`at` parsed into `_at`), or None."""
    try:
        alert = orjson.loads(value)
        alert["_at"] = parse_time(alert["at"])
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
        return None
    return alert if isinstance(alert.get("series"), str) and alert.get("status") in STATUSES else None


def selected(
    alerts: Iterable[tuple[bytes, dict[str, Any]]], since: float | None, series: str | None, status: str | None
) -> Iterator[tuple[bytes, dict[str, Any]]]:
    for raw, alert in alerts:
        if since is not None and alert["_at"] < since:
            continue
        if series is not None and not fnmatch.fnmatchcase(alert["series"], series):
            continue
        if status is None or alert["status"] == status:
            yield raw, alert


def alert_line(alert: dict[str, Any]) -> str:
    """One line per message, the way the demo prints them: status, series, start, score against threshold,
    severity, the features that carry the error, who dismissed it when a verdict resolved it, and the id
    that `monitor feedback` takes."""
    features = " ".join(f"{f['feature']} {f['share']:.0%}" for f in alert.get("top_features") or ())
    line = (
        f"{alert['status']:<8} {alert['series']:<14} started {alert.get('started_at')} "
        f"score {alert.get('score', float('nan')):.3f} (threshold {alert.get('threshold', float('nan')):.3f}) "
        f"{alert.get('severity')}"
    )
    if features:
        line += f"  top: {features}"
    if alert.get("resolution") == "dismissed":
        line += f"  dismissed by {alert.get('resolved_by') or 'someone'}"
    return f"{line}  id {alert.get('alert_id')}"
