"""The messaging pipeline (SPEC §5–§6): create, send, status callbacks, inbound, reconciliation.

A message row is written first and handed to a task after commit. The task claims it atomically,
runs the pre-send checks, waits for the sender's pace and calls the backend. Callbacks and
inbound messages are stored as MessageEvents before anything else, then processed in batches;
a status only ever moves forward.
"""

import hashlib
import json
import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from config.celery import enqueue_on_commit, message_queue
from config.pacing import wait_for_slot
from contacts.models import Contact
from contacts.phones import mask, parse_phone
from conversations import breaker, eventlog
from conversations import status as lifecycle
from conversations.backends import SendError, get_backend
from conversations.models import Conversation, Message, MessageEvent, Sender
from conversations.segments import segment
from deliverability import catalogue, checks, consent, replies, services

log = logging.getLogger(__name__)

CLAIM_TIMEOUT = timedelta(minutes=2)  # a claim older than this belonged to a dead worker
MAX_SEND_ATTEMPTS = 7  # the first send and six retries
RECONCILE_HORIZON = timedelta(days=3)
BULK_HORIZON = 0.5  # seconds
Dispatch = Message.Dispatch


class SendRefused(Exception):
    """A message that cannot be created (no sender, empty body); the text is for staff."""


# Creating and sending --------------------------------------------------------------------------


def conversation_for(contact):
    conversation, _ = Conversation.objects.get_or_create(
        contact=contact, defaults={"organization_id": contact.organization_id}
    )
    return conversation


def _touch_conversation(conversation, message, unread=False):
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
        _touch_conversation(conversation, message)
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
    reason = checks.check_number(
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
    services.record_attempts(org=org, phones=[message.to_number])
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
    _record_event(
        kind=MessageEvent.Kind.SEND_ERROR,
        key=f"send:{message.pk}:{message.attempts + 1}:{exc.code}",
        message=message,
        status=Message.Status.FAILED,
        error_code=info.code,
        payload={"code": exc.code, "http_status": exc.http_status, "message": str(exc)},
        processed=True,
    )
    _finish(
        message,
        status=Message.Status.FAILED,
        error_code=info.code,
        error_message=reason[:300],
        final_at=now,
    )
    if exc.code is not None:
        services.error_apply(
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


# Events: storing, then processing --------------------------------------------------------------


def _record_event(*, kind, key, message=None, status="", error_code=None, payload, processed):
    """Store an event once per idempotency key; returns it, or None for a duplicate."""
    try:
        with transaction.atomic():
            return MessageEvent.objects.create(
                kind=kind,
                idempotency_key=key[:200],
                message=message,
                organization_id=message.organization_id if message else None,
                provider_sid=(message.provider_sid or "") if message else "",
                status=status,
                error_code=error_code,
                payload=payload,
                processed_at=timezone.now() if processed else None,
            )
    except IntegrityError:
        return None


def _int_or_none(value):
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(value):
    """A webhook value as storable text: PostgreSQL's JSON has no NUL and no lone surrogates."""
    text = "" if value is None else str(value)
    if text.isascii() and "\x00" not in text:
        return text  # what Twilio sends, nearly always
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


class MalformedWebhook(ValueError):
    """An inbound message without MessageSid (Twilio always sends one): refused with a 400."""


MAX_KEY = 200  # MessageEvent.idempotency_key


def event_key(kind, payload):
    """What makes two webhooks the same event (SPEC §6), from signed parameters only.

    Twilio's I-Twilio-Idempotency-Token header is not covered by the signature: a replayed
    callback with a fresh token is still a duplicate. A status callback is the same event when
    its (MessageSid, MessageStatus, ErrorCode) is; an inbound message when its MessageSid is.
    """
    sid = payload.get("MessageSid") or payload.get("SmsSid") or ""
    if kind == MessageEvent.Kind.STATUS:
        status = payload.get("MessageStatus") or payload.get("SmsStatus") or ""
        # Without a SID (never from Twilio's Messages API) it is stored, to be listed as
        # malformed: the same signed parameters are the same event.
        sid = sid or "nosid-" + _digest(json.dumps(payload, sort_keys=True))
        key = f"status:{sid}:{status}:{payload.get('ErrorCode', '')}"
    elif not sid:
        raise MalformedWebhook("MessageSid is missing")
    else:
        key = f"inbound:{sid}"
    if len(key) > MAX_KEY:  # only a forged or broken request has such a key
        key = f"{key[:120]}:sha256:{_digest(key)}"
    return key


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _error_code_column(value):
    """ErrorCode as the integer column takes it; None when it is not a plausible code (the
    payload keeps what came)."""
    code = _int_or_none(value)
    return code if code is not None and 0 <= code < 2**31 else None


def event_store(*, kind, params, query=None):
    """Store a webhook's payload as it came, once per event (event_key); False for a duplicate.

    Raises MalformedWebhook for an inbound message without MessageSid.
    """
    payload = {_text(key): _text(params.get(key)) for key in params}
    if query:
        payload["_query"] = {_text(key): _text(query.get(key)) for key in query}
    key = event_key(kind, payload)
    sid = payload.get("MessageSid") or payload.get("SmsSid") or ""
    if kind == MessageEvent.Kind.STATUS:
        status = payload.get("MessageStatus") or payload.get("SmsStatus") or ""
    else:
        status = "received"
    values = [
        kind,
        key,
        sid if len(sid) <= 34 else "",
        status[:20],
        _error_code_column(payload.get("ErrorCode")),
        json.dumps(payload),
        timezone.now(),
    ]
    # One statement in autocommit, INSERT … ON CONFLICT DO NOTHING: the request path of a
    # webhook is a single round trip to the database, and a duplicate is not stored again.
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_EVENT_INSERT, values)
            return cursor.rowcount == 1
    if connection.in_atomic_block:
        # Inside a transaction (a caller's, or a test's) the row commits with it.
        with connection.cursor() as cursor:
            cursor.execute(_EVENT_INSERT, values)
            return cursor.rowcount == 1
    # In autocommit on PostgreSQL, concurrent requests share their commits (eventlog).
    return eventlog.writer.store(values)


_EVENT_INSERT = (
    f"INSERT INTO {MessageEvent._meta.db_table} (kind, idempotency_key, provider_sid, status, "
    "error_code, payload, received_at, outcome) VALUES (%s, %s, %s, %s, %s, %s, %s, '') "
    "ON CONFLICT (idempotency_key) DO NOTHING"
)


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
    if status in lifecycle.FINAL:
        message.final_at = now
        message.dispatch = Dispatch.DONE
        fields += ["final_at", "dispatch"]
    info = None
    if status in lifecycle.FAILED:
        info = catalogue.describe(error_code)
        message.error_code = info.code
        message.error_message = info.reason
        fields += ["error_code", "error_message"]
    message.save(update_fields=fields)
    attempted_at = message.sent_at or message.created_at
    if info is not None and error_code is not None:
        services.error_apply(
            org=message.organization,
            phone=message.to_number,
            code=error_code,
            at=attempted_at,
            sender_ref=message.from_number,
        )
    elif status in {"delivered", "read"}:
        services.record_success(
            org=message.organization, phone=message.to_number, at=attempted_at, delivered=True
        )
    return f"now {status}"


NOT_OUR_NUMBER = "unknown recipient number"


def inbound_apply(event):
    """Apply one stored inbound message (inside the caller's transaction); returns the outcome.

    Locks follow conversations.events' order: the number's state, then its facts, before the
    contact, conversation and message are written.
    """
    params = event.payload
    to, sender_number = params.get("To") or "", params.get("From") or ""
    senders = Sender.objects.select_related("organization")
    sender = senders.filter(phone_number=to).first()
    if sender is None and params.get("MessagingServiceSid"):
        # A number of a messaging service's pool: the service is the org's sender.
        sender = senders.filter(messaging_service_sid=params["MessagingServiceSid"]).first()
    if sender is None:
        log.info("inbound message to %s, which is none of our senders", mask(to))
        return NOT_OUR_NUMBER
    org = sender.organization
    event.organization_id = org.pk
    phone = parse_phone(sender_number, org.default_region).e164 or sender_number
    if phone.startswith("+"):
        services.number_lock(org=org, phone=phone)
    same_number = Q(phone_e164=phone) if phone.startswith("+") else Q(phone_raw=sender_number)
    contact = Contact.objects.filter(same_number, organization=org).order_by("id").first()
    if contact is None:
        contact = Contact(organization=org, kind=Contact.Kind.LEAD)
        contact.set_phone(sender_number)
        contact.save()
    state = services.number_state(org=org, phone=phone)
    body = params.get("Body") or ""
    conversation = conversation_for(contact)
    message = Message.objects.create(
        organization=org,
        conversation=conversation,
        sender=sender,
        direction=Message.Direction.INBOUND,
        to_number=to,
        from_number=phone,
        body=body,
        status=Message.Status.RECEIVED,
        provider_sid=(params.get("MessageSid") or params.get("SmsSid") or None),
        segments=_segments(params.get("NumSegments"), body),
        blocked=state.is_invalid,
        final_at=timezone.now(),
    )
    event.message = message
    if event.attempts and _replied_since(conversation, event.received_at, message):
        # Applied late (a retry): it takes its place in the thread, and a later reply from the
        # number, already applied, has the last word (a late STOP never undoes a START).
        Message.objects.filter(pk=message.pk).update(created_at=event.received_at)
        Conversation.objects.filter(pk=conversation.pk).update(unread_count=F("unread_count") + 1)
        return "stored (a later reply from the number was already applied)"
    _touch_conversation(conversation, message, unread=True)
    if not phone.startswith("+"):
        # Not a phone number (an alphanumeric sender, a short code): stored, and nothing to
        # record against a number.
        return "stored (the sender is not a phone number)"
    if state.is_invalid:
        # Blocked: no conversation continues with an Invalid number. An opt-out is still
        # honoured (and a possible one queued for review), so that clearing the flag later
        # never texts someone who asked to stop. Nothing is sent back.
        reply = replies.from_opt_out_type(params.get("OptOutType")) or replies.classify(body)
        if (
            reply.intent == replies.Intent.OPT_OUT
            or reply.review_kind == replies.ReviewKind.OPT_OUT
        ):
            result = consent.reply_apply(org=org, contact=contact, message=message, reply=reply)
            return f"stored as blocked; {result.outcome}"
        return "stored as blocked (number marked invalid)"
    services.record_heartbeat(phone=phone, at=message.created_at)
    return _act_on_keywords(org, contact, sender, message, params.get("OptOutType"))


def _replied_since(conversation, moment, message):
    """Whether the number wrote again after `moment` (other than `message` itself)."""
    return (
        conversation.messages.filter(direction=Message.Direction.INBOUND, created_at__gt=moment)
        .exclude(pk=message.pk)
        .exists()
    )


def _segments(value, body):
    """Twilio's NumSegments when it is plausible, else counted from the body."""
    count = _int_or_none(value)
    if count is not None and 1 <= count <= 100:
        return count
    return max(segment(body).segments, 1)


def _act_on_keywords(org, contact, sender, message, opt_out_type):
    """SPEC §3. With Advanced Opt-Out, Twilio already acted and replied: record, don't reply."""
    reply = replies.from_opt_out_type(opt_out_type)
    twilio_replied = reply is not None
    reply = reply or replies.classify(message.body)
    result = consent.reply_apply(org=org, contact=contact, message=message, reply=reply)
    if twilio_replied:
        return result.outcome
    if result.confirm_opt_out and org.opt_out_confirmation.strip():
        message_create_outbound(
            org=org,
            contact=contact,
            body=org.opt_out_confirmation,
            sender=sender,
            auto_reply=Message.AutoReply.OPT_OUT_CONFIRMATION,
        )
    elif reply.intent == replies.Intent.HELP and org.help_reply.strip():
        message_create_outbound(
            org=org,
            contact=contact,
            body=org.help_reply,
            sender=sender,
            auto_reply=Message.AutoReply.HELP,
        )
    return result.outcome


# Reconciliation and expiry ---------------------------------------------------------------------


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
    event = _record_event(
        kind=MessageEvent.Kind.STATUS,
        key=f"{source}:{remote.sid}:{remote.status}:{remote.error_code or ''}",
        message=message,
        status=remote.status,
        error_code=remote.error_code,
        payload={"MessageSid": remote.sid, "MessageStatus": remote.status, "source": source},
        processed=True,
    )
    with transaction.atomic():
        outcome = message_apply_status(
            message, status=remote.status, error_code=remote.error_code, sid=remote.sid
        )
    if event:
        MessageEvent.objects.filter(pk=event.pk).update(outcome=outcome[:200])
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
            services.record_success(
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
