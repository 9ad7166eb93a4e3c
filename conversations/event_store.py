"""Storing message events (SPEC §6): every webhook is stored, once per event, before Twilio gets
its 2xx; conversations.events applies them afterwards. The send path and reconciliation record
what they learn as events of their own through the same function, `event_save_once`.
"""

import hashlib
import json

from django.db import IntegrityError, connection, transaction

from conversations import eventlog
from conversations.models import MessageEvent


def event_store(*, kind, params, query=None):
    """Store a webhook's payload as it came, once per event (event_key); False for a duplicate.

    Raises MalformedWebhook for an inbound message without MessageSid.
    """
    payload = {_text(key): _text(params.get(key)) for key in params}
    if query:
        payload["_query"] = {_text(key): _text(query.get(key)) for key in query}
    sid = payload.get("MessageSid") or payload.get("SmsSid") or ""
    if kind == MessageEvent.Kind.STATUS:
        status = payload.get("MessageStatus") or payload.get("SmsStatus") or ""
    else:
        status = "received"
    event = MessageEvent(
        kind=kind,
        idempotency_key=event_key(kind, payload),
        provider_sid=sid if len(sid) <= 34 else "",
        status=status[:20],
        error_code=_error_code_column(payload.get("ErrorCode")),
        payload=payload,
    )
    return event_save_once(event)


def event_save_once(event):
    """Store `event`, a MessageEvent not saved yet, unless one with its idempotency key is
    stored already; True if stored, False for a duplicate.

    The ORM's INSERT, in a savepoint that a duplicate rolls back. A webhook's event on
    PostgreSQL in autocommit (the request path in production) goes instead through the group
    commit of conversations.eventlog: one INSERT … ON CONFLICT DO NOTHING for the rows of every
    concurrent request and one commit, which `bench callbacks` needs to keep the webhook above
    its floor.
    """
    in_autocommit = not connection.in_atomic_block
    if connection.vendor == "postgresql" and in_autocommit and eventlog.takes(event):
        return eventlog.writer.store(eventlog.row(event))
    try:
        with transaction.atomic():
            event.save(force_insert=True)
    except IntegrityError:
        if MessageEvent.objects.filter(idempotency_key=event.idempotency_key).exists():
            return False
        raise
    return True


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
