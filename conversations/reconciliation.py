"""Reconciliation and expiry (SPEC §5, §6): what the provider knows of a message when its
callback never came, its send's outcome is unknown or its worker died; and the messages that
waited too long to be sent.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.celery import enqueue_on_commit, message_queue
from conversations import status as lifecycle
from conversations.backends import get_backend
from conversations.event_store import event_save_once
from conversations.models import Message, MessageEvent
from conversations.sending import MAX_SEND_ATTEMPTS, backoff, message_give_up
from deliverability import catalogue, outcomes

log = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=2)  # a claim older than this belonged to a dead worker
RECONCILE_HORIZON = timedelta(days=3)
Dispatch = Message.Dispatch


def message_apply_status(message, *, status, error_code=None, sid="", done_at=None):
    """Move a message's status forward and apply what it means for the number."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    if sid and not message.provider_sid:
        message.provider_sid = sid
        message.save(update_fields=["provider_sid"])
    if not lifecycle.moves_forward(message.status, status):
        return f"kept {message.status} (got {status})"
    now = timezone.now()
    message.status = status
    message.status_changed_at = now
    fields = ["status", "status_changed_at"]
    if done_at:
        message.carrier_done_at = done_at
        fields.append("carrier_done_at")
    if status in Message.Status.FINAL:
        message.final_at = now
        message.dispatch = Dispatch.DONE
        fields += ["final_at", "dispatch"]
    info = None
    if status in Message.Status.FAILED_OR_UNDELIVERED:
        info = catalogue.describe(error_code)
        message.error_code = info.code
        message.error_message = info.reason
        fields += ["error_code", "error_message"]
    message.save(update_fields=fields)
    attempted_at = message.sent_at or message.created_at
    if info is not None and error_code is not None:
        outcomes.error_apply(
            org=message.organization,
            phone=message.to_number,
            code=error_code,
            at=attempted_at,
            sender_ref=message.from_number,
        )
    elif status in Message.Status.DELIVERED_OR_READ:
        outcomes.record_success(
            org=message.organization, phone=message.to_number, at=attempted_at, delivered=True
        )
    return f"now {status}"


def message_store_price(message, remote):
    """Keep Twilio's own price of a message when a fetch brought one: the cost ledger
    (deliverability.costs) prefers it to its estimate from the list prices."""
    if remote.price is not None and remote.price != message.price:
        Message.objects.filter(pk=message.pk).update(
            price=remote.price, price_unit=remote.price_unit
        )
        message.price, message.price_unit = remote.price, remote.price_unit


def _apply_remote(message, remote, source):
    """Apply what the provider says of a message as an event of its own (recorded once)."""
    message_store_price(message, remote)
    event = MessageEvent.learned(
        message,
        kind=MessageEvent.Kind.STATUS,
        key=f"{source}:{remote.sid}:{remote.status}:{remote.error_code or ''}",
        status=remote.status,
        error_code=remote.error_code,
        payload={"MessageSid": remote.sid, "MessageStatus": remote.status, "source": source},
    )
    stored = event_save_once(event)
    with transaction.atomic():
        outcome = message_apply_status(
            message, status=remote.status, error_code=remote.error_code, sid=remote.sid
        )
    if stored:
        MessageEvent.objects.filter(idempotency_key=event.idempotency_key).update(
            outcome=outcome[:200]
        )
    return outcome


def reconcile_unknown_send(message_id):
    """A send whose outcome is unknown: find it at the provider before anything is re-sent."""
    message = Message.objects.select_related("organization").filter(pk=message_id).first()
    if message is None or message.dispatch != Dispatch.UNKNOWN:
        return "nothing to reconcile"
    since = (message.claimed_at or message.created_at) - timedelta(minutes=5)
    backend = get_backend()
    if message.provider_sid:
        found = [backend.fetch(message.provider_sid)]
    else:
        found = backend.find(to=message.to_number, from_=message.from_number, after=since)
        found = [m for m in found if m and (not m.body or m.body == message.body)]
        # The same text to the same number a minute earlier is another message of ours.
        taken = set(
            Message.objects.filter(provider_sid__in=[m.sid for m in found])
            .exclude(pk=message.pk)
            .values_list("provider_sid", flat=True)
        )
        found = [m for m in found if m.sid not in taken]
    found = [m for m in found if m is not None]
    if found:
        remote = found[0]
        Message.objects.filter(pk=message.pk).update(
            dispatch=Dispatch.SUBMITTED, sent_at=message.claimed_at or timezone.now()
        )
        message.refresh_from_db()
        _apply_remote(message, remote, "reconcile")
        return f"found as {remote.sid}"
    # The provider has no such message: it never left, and sending it again is safe, after a
    # back-off (a provider that fails every send must not be hammered).
    if not Message.objects.filter(pk=message.pk, dispatch=Dispatch.UNKNOWN).update(
        dispatch=Dispatch.WAITING
    ):
        return "nothing to reconcile"
    if message.attempts >= MAX_SEND_ATTEMPTS:
        message_give_up(message.pk, "Gave up after retries: the provider never took it")
        return "gave up"
    enqueue_on_commit(
        "conversations.tasks.send_message",
        message.pk,
        countdown=backoff(message.attempts - 1),
        queue=message_queue(message),
    )
    return "not found; sending again"


def reclaim_stale_claims(now=None):
    """Claims held longer than CLAIM_TIMEOUT belonged to a worker that died mid-send.

    A send whose outcome is still unknown that long after its claim had its reconciliation
    fail (the provider did not answer): it is reconciled again, until the provider answers.
    """
    now = now or timezone.now()
    unresolved = list(
        Message.objects.filter(
            dispatch=Dispatch.UNKNOWN, claimed_at__lt=now - CLAIM_TIMEOUT
        ).values_list("pk", flat=True)[:500]
    )
    for pk in unresolved:
        enqueue_on_commit("conversations.tasks.reconcile_unknown_send", pk)
    stale = list(
        Message.objects.filter(
            dispatch=Dispatch.CLAIMED, claimed_at__lt=now - CLAIM_TIMEOUT
        ).values_list("pk", flat=True)[:500]
    )
    for pk in stale:
        if Message.objects.filter(pk=pk, dispatch=Dispatch.CLAIMED).update(
            dispatch=Dispatch.UNKNOWN
        ):
            enqueue_on_commit("conversations.tasks.reconcile_unknown_send", pk)
    return len(stale)


def reconcile_stuck(now=None, batch=200):
    """Fetch from the provider the messages with no final status past STATUS_UNAVAILABLE_AFTER."""
    now = now or timezone.now()
    window_end = now - settings.STATUS_UNAVAILABLE_AFTER
    stuck = (
        Message.objects.without_final_status()
        .exclude(provider_sid=None)
        .filter(sent_at__lt=window_end, sent_at__gt=now - RECONCILE_HORIZON)
        .select_related("organization")
        .order_by("sent_at")[:batch]
    )
    backend, checked = get_backend(), 0
    for message in stuck:
        try:
            remote = backend.fetch(message.provider_sid)
        except Exception as exc:  # One failing fetch must not stop the sweep.
            log.warning("could not fetch %s: %s", message.provider_sid, exc)
            continue
        checked += 1
        if remote is None:
            continue
        message_store_price(message, remote)
        if remote.status != message.status:
            _apply_remote(message, remote, "fetch")
        elif remote.status == "sent":
            # A sent message that never gets a later status counts as a success (SPEC §5).
            outcomes.record_success(
                org=message.organization,
                phone=message.to_number,
                at=message.sent_at,
                delivered=False,
            )
    return checked


def expire_overdue(now=None):
    """Messages still waiting past MESSAGE_VALIDITY_SECONDS expire (30036) without being sent.

    They never reached the number, so the error does not count against it.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.MESSAGE_VALIDITY_SECONDS)
    reason = catalogue.describe(30036).reason
    return Message.objects.filter(
        Q(dispatch=Dispatch.WAITING) | Q(dispatch=""),
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.PENDING,
        created_at__lt=cutoff,
    ).update(
        status=Message.Status.FAILED,
        error_code=30036,
        error_message=reason,
        dispatch=Dispatch.DONE,
        final_at=now,
        status_changed_at=now,
    )
