"""Storing webhook events (SPEC §6): every callback and inbound message is stored, once per
event, before Twilio gets its 2xx; conversations.events applies them afterwards.
"""

import hashlib
import json

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from conversations import eventlog
from conversations.models import MessageEvent


def event_record(*, kind, key, message=None, status="", error_code=None, payload, processed):
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
