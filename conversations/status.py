"""The status lifecycle (SPEC §6): ranks for "only forward", and what staff call each status."""

from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from conversations.models import Message
from deliverability import catalogue
from deliverability.models import InvalidSource, SkipReason

RANK = {
    "pending": 0,
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "partially_delivered": 4,
    "read": 5,
}


def moves_forward(current, new):
    """Whether a message at `current` may take the status `new`.

    Only forward; the first final status wins (a different later final changes nothing); `read`
    comes after `delivered` only.
    """
    if new not in RANK or current not in RANK:
        return False
    if new == "read":
        return current == "delivered"
    if current in Message.Status.FINAL or current == "read":
        return False
    return RANK[new] > RANK[current]


def parse_dlr_done_date(value):
    """RawDlrDoneDate (YYMMDDhhmm, UTC) as an aware datetime, or None when malformed."""
    value = (value or "").strip()
    if len(value) != 10 or not value.isdigit():
        return None
    try:
        return datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None


def staff_status(message, now=None):
    """What staff see (SPEC §6): Queuing, Sending, Sent, Delivered, Failed, Undelivered,
    Skipped, Status Unavailable (no final status for too long), Received."""
    status = message.status
    if message.direction == "inbound":
        return "Received"
    if status == "skipped":
        return "Skipped"
    if status in Message.Status.IN_FLIGHT:
        now = now or timezone.now()
        started = message.sent_at or message.created_at
        if (
            status in {"sent", "sending", "queued", "accepted"}
            and message.provider_sid
            and (started and now - started > settings.STATUS_UNAVAILABLE_AFTER)
        ):
            return "Status Unavailable"
        if status in {"pending", "accepted", "scheduled", "queued"}:
            return "Queuing"
        return "Sending" if status == "sending" else "Sent"
    return {
        "delivered": "Delivered",
        "read": "Delivered",
        "undelivered": "Undelivered",
        "failed": "Failed",
        "canceled": "Canceled",
        "partially_delivered": "Partially delivered",
    }.get(status, status.title())


def failed_reason(message):
    """Why a message did not go out, in staff's words ("" when it went out): the one Failed
    Reason of every page and export (SPEC §7).

    A message skipped because staff had flagged the number Invalid by hand has no reason (the
    column is empty then); when the flag is automatic, the flag's own reason is given. The
    flag is read from the `number_invalid_source` and `number_invalid_reason` annotations
    (conversations.queries.with_number_state); without them a flag counts as set by hand.
    """
    if message.status == "skipped":
        if message.skip_reason == SkipReason.MARKED_INVALID:
            if getattr(message, "number_invalid_source", None) == InvalidSource.AUTOMATIC:
                return message.number_invalid_reason or ""
            return ""
        if message.skip_reason in SkipReason.values:
            return SkipReason(message.skip_reason).label
        return ""
    if message.status in Message.Status.FAILED_OR_UNDELIVERED:
        if message.error_code is not None:
            return catalogue.describe(message.error_code).reason
        return message.error_message or ""
    return ""


def not_sent_reason(message):
    """Why a message did not go out, as a thread, a profile and the Sample Text say it: the
    Failed Reason, or where that is empty by rule (a flag set by hand) the skip's own label."""
    reason = failed_reason(message)
    if not reason and message.status == "skipped" and message.skip_reason in SkipReason.values:
        return SkipReason(message.skip_reason).label
    return reason


def sample_outcome(message, now=None):
    """(what staff read under the Sample Text form, whether it is final): "Queued", "Sent",
    "Delivered", "Failed: <reason>" or "Skipped: <reason>", in plain words."""
    shown = staff_status(message, now)
    if message.status == "skipped":
        return f"Skipped: {(not_sent_reason(message) or 'pre-send check').lower()}", True
    if message.status in Message.Status.FAILED_OR_UNDELIVERED:
        return f"Failed: {failed_reason(message) or 'no reason given'}", True
    if shown == "Status Unavailable":
        return "Sent; the carrier has not reported delivery", True
    text = {"Queuing": "Queued", "Sending": "Sent"}.get(shown, shown)
    return text, message.status in Message.Status.FINAL or message.status == "read"


def awaits_status(message, now=None):
    """An outbound message whose status may still change soon: the thread keeps asking for it
    (every few seconds) until it is final or shown as Status Unavailable."""
    if message.direction != "outbound" or message.status not in Message.Status.IN_FLIGHT:
        return False
    return staff_status(message, now) != "Status Unavailable"
