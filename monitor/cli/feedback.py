"""`monitor feedback ALERT_ID --false-positive|--true-positive`: a person's verdict on one alert.

It finds the alert on the alert topic (for its series, which keys the verdict so it reaches the replica
that holds the series) and produces one `monitor.feedback/v1` message to `kafka.feedback_topic`. The
running daemons take it from there: a false positive of an open alert resolves it as dismissed and the
pattern becomes normal for that series; every verdict counts in `monitor_feedback_total`.
"""

from __future__ import annotations

import argparse
import getpass
import os

from monitor.cli.alerts import decoded
from monitor.config import load_config
from monitor.errors import InputError
from monitor.records import Feedback, encode_feedback

HELP = "judge an alert (false or true positive) on the feedback topic; the daemon learns from it"


def add_arguments(feedback: argparse.ArgumentParser) -> None:
    feedback.add_argument("alert_id", metavar="ALERT_ID", help="the alert's id (`monitor alerts` prints it)")
    verdict = feedback.add_mutually_exclusive_group(required=True)
    verdict.add_argument(
        "--false-positive",
        dest="verdict",
        action="store_const",
        const="false_positive",
        help="not an anomaly: dismiss the alert if it is open, and treat the pattern as normal for its series",
    )
    verdict.add_argument(
        "--true-positive", dest="verdict", action="store_const", const="true_positive", help="a real anomaly"
    )
    feedback.add_argument("--note", help="free text kept with the verdict")
    feedback.add_argument("--by", default=None, help="who judges (default: $USER)")


def run(args: argparse.Namespace) -> int:
    from monitor.kafka.sink import KafkaSink  # kafka-python only when the command runs
    from monitor.kafka.tools import read_range

    kafka = load_config(args.config).kafka
    alerts = (alert for _, alert in decoded(read_range(kafka, kafka.alert_topic)))
    series = next((a["series"] for a in alerts if a.get("alert_id") == args.alert_id), None)
    if series is None:
        raise InputError(f"alert {args.alert_id!r} is not on the alert topic {kafka.alert_topic!r}")
    by = args.by or os.environ.get("USER") or getpass.getuser()
    message = encode_feedback(Feedback(args.alert_id, args.verdict, series, by, args.note))
    sink = KafkaSink(kafka)
    try:
        sink.send(kafka.feedback_topic, message, series.encode())
        sink.flush()
    finally:
        sink.close()
    print(f"{args.verdict} on alert {args.alert_id} ({series}) sent to {kafka.feedback_topic}")
    return 0
