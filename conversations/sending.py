"""Creating and sending outbound messages (SPEC §5).

A message row is written first and handed to a task after commit. The task claims it atomically,
runs the pre-send checks, waits for the sender's pace and calls the backend. A transient failure
is retried with back-off; one that outlives its retries gives up; a send whose outcome is unknown
is found at the provider (conversations.reconciliation) before anything is sent again.
"""

import logging
import random

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from config.celery import enqueue_on_commit, message_queue
from config.pacing import wait_for_slot
from conversations import breaker
from conversations.backends import SendError, get_backend
from conversations.event_store import event_save_once
from conversations.models import Conversation, Message, MessageEvent, Sender
from conversations.segments import segment
from deliverability import catalogue, eligibility, outcomes

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 7  # the first send and six retries
BULK_HORIZON = 0.5  # seconds
Dispatch = Message.Dispatch


class SendRefused(Exception):
    """A message that cannot be created (no sender, empty body); the text is for staff."""


def conversation_for(contact):
    conversation, _ = Conversation.objects.get_or_create(
        contact=contact, defaults={"organization_id": contact.organization_id}
    )
    return conversation


def touch_conversation(conversation, message, unread=False):
    updates = {
        "last_message_at": message.created_at,
        "last_message_preview": message.body[:160],
        "last_message_direction": message.direction,
    }
    if unread:
        updates["unread_count"] = F("unread_count") + 1
    Conversation.objects.filter(pk=conversation.pk).update(**updates)


def default_sender(org):
    return Sender.objects.filter(organization=org, is_active=True).order_by("id").first()


@transaction.atomic
def message_create_outbound(
    *,
    org,
    contact,
    body,
    sender=None,
    by=None,
    broadcast=None,
    is_test=False,
    auto_reply="",
    phone="",
):
    """Create an outbound message and hand it to the send task once the transaction commits.

    `auto_reply` marks an automatic answer to the member (Message.AutoReply): the send path
    then holds it back only for the Invalid flag or a carrier STOP. A Sample Text goes to a
    `phone` with no contact: it never creates or changes one, and stays out of conversations.
    """
    if contact is None and not (is_test and phone):
        raise SendRefused("Only a Sample Text goes to a number without a contact.")
    body = (body or "").strip()
    if not body:
        raise SendRefused("Write a message first.")
    sender = sender or default_sender(org)
    if sender is None or sender.organization_id != org.id:
        raise SendRefused("No sending number is set up for this organization.")
    parts = segment(body)
    conversation = conversation_for(contact) if contact is not None else None
    message = Message.objects.create(
        organization=org,
        conversation=conversation,
        sender=sender,
        broadcast=broadcast,
        sent_by=by,
        direction=Message.Direction.OUTBOUND,
        to_number=(contact.phone_e164 or contact.phone_raw) if contact is not None else phone,
        from_number=sender.address,
        body=body,
        segments=max(parts.segments, 1),
        encoding=parts.encoding,
        is_test=is_test,
        auto_reply=auto_reply,
        dispatch=Dispatch.WAITING,
    )
    if conversation is not None:
        touch_conversation(conversation, message)
    enqueue_on_commit("conversations.tasks.send_message", message.pk, queue=message_queue(message))
    return message


def status_callback_url(message):
    """Our status webhook with our own message id (a callback can beat the SID's save), and
    Twilio's connection-override fragment so that Twilio retries a callback that failed."""
    path = reverse("webhooks:status")
    return f"{settings.PUBLIC_BASE_URL}{path}?m={message.pk}#rc=5&rp=all"


def _claim(message_id):
    return Message.objects.filter(pk=message_id, dispatch=Dispatch.WAITING).update(
        dispatch=Dispatch.CLAIMED, claimed_at=timezone.now(), attempts=F("attempts") + 1
    )


def _finish(message, **fields):
    fields.setdefault("status_changed_at", timezone.now())
    Message.objects.filter(pk=message.pk).update(dispatch=Dispatch.DONE, **fields)


def backoff(retries, base=5.0, cap=600.0):
    """Exponential back-off with full jitter, in seconds: about 5, 10, 20 … up to 10 minutes."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2**retries)


class RetryLater(Exception):
    """A transient failure: the task retries with back-off (the claim has been released)."""


def message_send(message_id):
    """Send one message: claim, check, pace, call the backend, store. Returns what happened.

    Raises RetryLater for transient provider failures; the caller retries with back-off.
    """
    if not _claim(message_id):
        return "not claimable"
    message = Message.objects.select_related("organization", "sender", "broadcast").get(
        pk=message_id
    )
    org, now = message.organization, timezone.now()
    if message.broadcast and message.broadcast.state == message.broadcast.State.CANCELED:
        _finish(message, status=Message.Status.CANCELED, final_at=now)
        return "canceled"
    reason = eligibility.check_number(
        org=org,
        phone=message.to_number,
        is_test=message.is_test,
        broadcast=message.broadcast_id is not None,
        auto_reply=bool(message.auto_reply),
    )
    if reason:
        _finish(message, status=Message.Status.SKIPPED, skip_reason=reason, final_at=now)
        return f"skipped: {reason}"
    sender = message.sender
    if sender is None:
        _finish(message, status=Message.Status.FAILED, error_message="No sender", final_at=now)
        return "no sender"
    # A broadcast's send books its slot at most BULK_HORIZON ahead: an interactive send of
    # the same sender then waits behind a few bulk sends, not behind the whole broadcast.
    horizon = BULK_HORIZON if message.broadcast_id else None
    wait_for_slot(f"sender-{sender.pk}", sender.throughput, horizon=horizon)
    # Renew the claim after the wait: if the sweeper took it meanwhile (it thought this worker
    # dead), this worker must not send as well.
    if not Message.objects.filter(pk=message.pk, dispatch=Dispatch.CLAIMED).update(
        claimed_at=timezone.now()
    ):
        return "claim lost while waiting for the sender's pace"
    if breaker.holds(message):
        # The breaker tripped since this was released: back with the held ones, unsent.
        Message.objects.filter(pk=message.pk, dispatch=Dispatch.CLAIMED).update(
            dispatch=Dispatch.HELD, attempts=F("attempts") - 1
        )
        return "held by the circuit breaker"
    outcomes.record_attempts(org=org, phones=[message.to_number])
    try:
        result = get_backend().send(
            to=message.to_number,
            from_=sender.address,
            body=message.body,
            status_callback=status_callback_url(message),
        )
    except SendError as exc:
        return _send_failed(message, exc)
    sent_at = timezone.now()
    Message.objects.filter(pk=message.pk).update(provider_sid=result.sid, sent_at=sent_at)
    Message.objects.filter(pk=message.pk, dispatch=Dispatch.CLAIMED).update(
        dispatch=Dispatch.SUBMITTED
    )
    # A callback may already have moved the status on; only a pending message takes ours.
    Message.objects.filter(pk=message.pk, status=Message.Status.PENDING).update(
        status=result.status, status_changed_at=sent_at
    )
    return f"sent as {result.sid}"


def _send_failed(message, exc):
    if exc.outcome_unknown:
        Message.objects.filter(pk=message.pk).update(dispatch=Dispatch.UNKNOWN)
        enqueue_on_commit("conversations.tasks.reconcile_unknown_send", message.pk)
        log.warning("send of message %s has an unknown outcome: %s", message.pk, exc)
        return "outcome unknown"
    if exc.transient:
        Message.objects.filter(pk=message.pk, dispatch=Dispatch.CLAIMED).update(
            dispatch=Dispatch.WAITING
        )
        raise RetryLater(str(exc))
    info = catalogue.describe(exc.code)
    # No Twilio code: the request itself was refused (a contract break, a proxy), not the
    # number; the catalogue has nothing to say and the number is not blamed.
    reason = info.reason if exc.code is not None else f"Refused (HTTP {exc.http_status}): {exc}"
    now = timezone.now()
    error_event = MessageEvent.learned(
        message,
        kind=MessageEvent.Kind.SEND_ERROR,
        key=f"send:{message.pk}:{message.attempts + 1}:{exc.code}",
        status=Message.Status.FAILED,
        error_code=info.code,
        payload={"code": exc.code, "http_status": exc.http_status, "message": str(exc)},
    )
    event_save_once(error_event)
    _finish(
        message,
        status=Message.Status.FAILED,
        error_code=info.code,
        error_message=reason[:300],
        final_at=now,
    )
    if exc.code is not None:
        outcomes.error_apply(
            org=message.organization,
            phone=message.to_number,
            code=exc.code,
            at=now,
            sender_ref=message.from_number,
        )
        message.error_code = info.code
        breaker.errors_recorded([message])
    return f"failed: {exc.code or exc.http_status}"


def message_give_up(message_id, reason):
    """A transient failure that outlived its retries: the message failed."""
    Message.objects.filter(pk=message_id, dispatch=Dispatch.WAITING).update(
        status=Message.Status.FAILED,
        error_message=reason[:300],
        dispatch=Dispatch.DONE,
        final_at=timezone.now(),
        status_changed_at=timezone.now(),
    )
