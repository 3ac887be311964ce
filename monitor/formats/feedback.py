"""Feedback messages (`monitor.feedback/v1`): a person's verdict on one alert, bytes in, `Feedback` or `Rejected` out.

The message is a JSON object with `alert_id`, `verdict` (`false_positive` | `true_positive`) and optional
`by` and `note`; the record key is the alert's series. It goes through the same byte-level checks and
rejection reasons as the metrics formats, so a bad verdict is counted and dead-lettered like a bad point.
"""

from __future__ import annotations

from typing import Any

from monitor.formats.native import Bad, json_document, message_text, show
from monitor.records import VERDICTS, Feedback, Rejected


def decode_feedback(raw: bytes | None, key: bytes | None, max_bytes: int) -> Feedback | Rejected:
    """The verdict of one feedback record, or why it cannot be used (a reason of `formats.REASONS`)."""
    try:
        return _feedback(json_document(message_text(raw, max_bytes)), key)
    except Bad as bad:
        return Rejected(bad.reason, bad.detail)


def _feedback(doc: Any, key: bytes | None) -> Feedback:
    if not isinstance(doc, dict):
        raise Bad("not_an_object", f"feedback must be a JSON object, got {show(doc)}")
    if not key:
        raise Bad("missing_field", "feedback record has no key (the alert's series)")
    try:
        series = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Bad("invalid_utf8", f"record key is not UTF-8 at byte {exc.start}") from None
    verdict = _required(doc, "verdict")
    if verdict not in VERDICTS:
        raise Bad("wrong_type", f"verdict: must be one of {list(VERDICTS)}, got {show(verdict)}")
    return Feedback(_required(doc, "alert_id"), verdict, series, _text(doc, "by"), _text(doc, "note"))


def _required(doc: dict[str, Any], field: str) -> str:
    value = _text(doc, field)
    if value is None:
        raise Bad("missing_field", f"feedback lacks {field!r}")
    return value


def _text(doc: dict[str, Any], field: str) -> str | None:
    value = doc.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise Bad("wrong_type", f"{field}: must be a non-empty string, got {show(value)}")
    return value
