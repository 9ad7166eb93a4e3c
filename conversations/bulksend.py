"""Broadcast sends in chunks (SPEC §5): the bulk queue's lean path to the carrier.

The dispatcher releases a broadcast's messages in chunks of about a tenth of a second of its
sender's rate (`chunk_size`), one `send_messages` task each. A chunk is claimed in one
statement and loaded in one query; its pre-send checks run set-based over the chunk in one
more (`deliverability.eligibility`, the expression the preview and the hand-off use), the circuit
breaker is asked once for it, and the attempts are recorded once. Then each message waits for
its sender's pace, goes to the provider on the thread's kept-alive client, and is stored in one
statement. A one-to-one send keeps `sending.message_send`, which does the same per message.

The answers of the checks and of the breaker are at most FRESH_FOR old when a message goes
out: a chunk asks again for its remaining messages when they are older, and at once after one
of its own sends drew an error (the error that trips the breaker stops the rest of the chunk).
A claim is renewed before it grows old enough for the sweeper to take it for a dead worker's.
Errors are handled as for any send (`sending._send_failed`); a transient one sends that
message again later on its own, with back-off.
"""

import functools
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from config.celery import BULK, enqueue
from config.pacing import wait_for_slot
from contacts.phones import parse_phone
from conversations import sending
from conversations.backends import SendError, get_backend, send_paced
from conversations.models import Broadcast, Message, Sender
from deliverability import eligibility, outcomes

log = logging.getLogger(__name__)

Dispatch = Message.Dispatch
CHUNK_SECONDS = 0.1  # a chunk holds about this many seconds of its sender's sends
MAX_CHUNK = 20
STAGGERED_CHUNKS = 40  # chunks of a release into an empty pipeline that are staggered
FRESH_FOR = 1.0  # seconds the checks' and the breaker's answers stay good for a send
RENEW_AFTER = 30.0  # seconds; the sweeper takes claims older than reconciliation.CLAIM_TIMEOUT


def chunk_size(rate):
    """How many messages one bulk task sends: about CHUNK_SECONDS of the sender's rate (one
    per task for a long code, ten for a 100 msg/s short code)."""
    return max(1, min(MAX_CHUNK, int(float(rate) * CHUNK_SECONDS)))


def chunks(ids, size, staggered=0):
    """`ids` in chunks of `size`; the first `staggered` chunks take 1, 2, … `size` of them in
    turn instead.

    The workers that take a broadcast's first chunks all start at once; with chunks of one
    size they would also finish together, again and again, and claim and check their next
    chunks together while nobody sends. Staggered first chunks spread those moments out.
    """
    out, start, n = [], 0, 0
    while start < len(ids):
        take = n % size + 1 if n < staggered else size
        out.append(ids[start : start + take])
        start, n = start + take, n + 1
    return out


def _claim(message_ids):
    """Claim the waiting ones of `message_ids` in one statement; the ids claimed."""
    table = Message._meta.db_table
    marks = ", ".join(["%s"] * len(message_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET dispatch = %s, claimed_at = %s, attempts = attempts + 1 "
            f"WHERE id IN ({marks}) AND dispatch = %s RETURNING id",
            [Dispatch.CLAIMED, timezone.now(), *message_ids, Dispatch.WAITING],
        )
        return sorted(row[0] for row in cursor.fetchall())


def _verdicts(messages, now):
    """{message id: skip reason or None} for broadcast messages, set-based: one query per org.

    A number the set-based form cannot read as stored (not in E.164) gets `check_number`.
    """
    verdicts, by_org = {}, {}
    for message in messages:
        if _stored_as_e164(message.to_number, message.organization.default_region):
            by_org.setdefault(message.organization, []).append(message.pk)
        else:
            verdicts[message.pk] = eligibility.check_number(
                org=message.organization, phone=message.to_number, now=now, broadcast=True
            )
    for org, ids in by_org.items():
        sql, params = _verdict_statement(org, ids, now)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            verdicts.update(cursor.fetchall())
    return verdicts


@functools.lru_cache(maxsize=4096)
def _stored_as_e164(number, region):
    """Whether `number` is stored as the valid E.164 form the set-based checks read (a chunk
    asks again for its numbers at each check: parsed once)."""
    parsed = parse_phone(number, region)
    return parsed.is_valid and parsed.e164 == number


# The checks' statement for a chunk, built once per org and chunk length: building the ORM
# expression costs more CPU than running it. Built for SENTINEL_NOW and the ids -1, -2, …;
# each run shifts the time parameters (every one of them is `now` less a period) and puts
# its ids in their places.
SENTINEL_NOW = datetime(2000, 1, 1, tzinfo=UTC)
_statements = {}
_statements_lock = threading.Lock()
MAX_STATEMENTS = 200


def _checked(org, ids, now):
    return eligibility.annotate_skip_reason(
        Message.objects.filter(pk__in=ids),
        org=org,
        phone_ref="to_number",
        valid_phone=Q(pk__isnull=False),
        now=now,
        broadcast=True,
        name="_verdict",
    ).values_list("pk", "_verdict")


def _verdict_statement(org, ids, now):
    if connection.vendor != "postgresql":
        # Other databases get their time parameters as text already: built each time.
        return _checked(org, ids, now).query.sql_with_params()
    key = (connection.alias, org.pk, len(ids))
    with _statements_lock:
        built = _statements.get(key)
    if built is None:
        placeholders = [-(n + 1) for n in range(len(ids))]
        built = _checked(org, placeholders, SENTINEL_NOW).query.sql_with_params()
        with _statements_lock:
            if len(_statements) >= MAX_STATEMENTS:
                _statements.clear()
            _statements[key] = built
    sql, template = built
    shift, by_placeholder = now - SENTINEL_NOW, {-(n + 1): pk for n, pk in enumerate(ids)}
    params = []
    for value in template:
        if isinstance(value, datetime):
            value = value + shift
        elif isinstance(value, int) and value < 0:
            value = by_placeholder[value]
        params.append(value)
    return sql, params


def _held_broadcasts(messages, now):
    """The broadcasts among `messages`' whose sender or text the breaker pauses now (one
    statement, written out: the ORM's two would cost more CPU to build than to run)."""
    pairs = {(m.sender_id, m.broadcast_id) for m in messages}
    senders, texts = sorted({s for s, _ in pairs if s}), sorted({b for _, b in pairs if b})
    sql, params, now = [], [], connection.ops.adapt_datetimefield_value(now)
    if senders:
        sql.append(f"SELECT 's', id FROM {Sender._meta.db_table} WHERE id IN ({_marks(senders)}) ")
        sql[-1] += "AND broadcasts_paused_until > %s"
        params += [*senders, now]
    if texts:
        sql.append(f"SELECT 'b', id FROM {Broadcast._meta.db_table} WHERE id IN ({_marks(texts)}) ")
        sql[-1] += "AND body_paused_until > %s"
        params += [*texts, now]
    if not sql:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(sql), params)
        paused = set(cursor.fetchall())
    return {b for s, b in pairs if ("s", s) in paused or ("b", b) in paused}


def _marks(values):
    return ", ".join(["%s"] * len(values))


def _store_sent(message, result):
    """The provider took it: its SID, when, and the status it answered, in one statement (a
    callback may already have moved the status on; only a pending message takes ours)."""
    sent_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _STORE_SENT,
            [
                result.sid,
                sent_at,
                Dispatch.CLAIMED,
                Dispatch.SUBMITTED,
                Message.Status.PENDING,
                sent_at,
                Message.Status.PENDING,
                result.status,
                message.pk,
            ],
        )


# Written out once: the ORM would build and compile the same statement again for every send.
_STORE_SENT = (
    f"UPDATE {Message._meta.db_table} SET provider_sid = %s, sent_at = %s, "
    "dispatch = CASE WHEN dispatch = %s THEN %s ELSE dispatch END, "
    "status_changed_at = CASE WHEN status = %s THEN %s ELSE status_changed_at END, "
    "status = CASE WHEN status = %s THEN %s ELSE status END "
    "WHERE id = %s"
)


def _retry_later(message):
    """A transient failure released the claim: this message alone goes again after a back-off,
    or fails once it has had its attempts."""
    if message.attempts >= sending.MAX_SEND_ATTEMPTS:
        sending.message_give_up(message.pk, "Gave up after retries: the provider kept failing")
        return "gave up"
    enqueue(
        "conversations.tasks.send_message",
        message.pk,
        countdown=sending.backoff(message.attempts - 1),
        queue=BULK,
    )
    return "retry later"


def messages_send(message_ids, clock=time.monotonic):
    """Send a chunk of released broadcast messages; returns how many ended each way."""
    claimed = _claim(list(message_ids)) if message_ids else []
    if not claimed:
        return {}
    messages = list(
        Message.objects.filter(pk__in=claimed)
        .select_related("organization", "sender", "broadcast")
        .order_by("pk")
    )
    ended = Counter()
    checked_at = claimed_at = clock()
    verdicts, held, recorded = None, set(), set()
    for index, message in enumerate(messages):
        rest = messages[index:]
        now = timezone.now()
        if verdicts is None or clock() - checked_at > FRESH_FOR:
            verdicts, held = _verdicts(rest, now), _held_broadcasts(rest, now)
            checked_at = clock()
            new = [m for m in rest if m.pk not in recorded and not verdicts[m.pk]]
            for org in {m.organization for m in new}:
                phones = [m.to_number for m in new if m.organization == org]
                outcomes.record_attempts(org=org, phones=phones)
            recorded.update(m.pk for m in new)
        outcome = _send_one(message, verdicts[message.pk], message.broadcast_id in held, now)
        if clock() - claimed_at > RENEW_AFTER:
            claimed_at = clock()
            Message.objects.filter(
                pk__in=[m.pk for m in messages[index + 1 :]], dispatch=Dispatch.CLAIMED
            ).update(claimed_at=timezone.now())
        if outcome.startswith(("failed", "outcome unknown", "retry", "gave up")):
            verdicts = None  # an error of ours may have tripped the breaker: ask again
        ended[outcome.split(":")[0]] += 1
    return dict(ended)


def _send_one(message, reason, held, now):
    if message.broadcast and message.broadcast.state == Broadcast.State.CANCELED:
        sending._finish(message, status=Message.Status.CANCELED, final_at=now)
        return "canceled"
    if reason:
        sending._finish(message, status=Message.Status.SKIPPED, skip_reason=reason, final_at=now)
        return "skipped"
    if held:
        # The breaker tripped since this was released: back with the held ones, unsent.
        Message.objects.filter(pk=message.pk, dispatch=Dispatch.CLAIMED).update(
            dispatch=Dispatch.HELD, attempts=F("attempts") - 1
        )
        return "held"
    sender = message.sender
    if sender is None:
        sending._finish(message, status=Message.Status.FAILED, error_message="No sender")
        return "failed: no sender"
    backend = get_backend()  # the thread's client is ready before the slot comes
    pace = functools.partial(
        wait_for_slot, f"sender-{sender.pk}", sender.throughput, horizon=sending.BULK_HORIZON
    )
    try:
        result = send_paced(
            backend,
            pace,
            to=message.to_number,
            from_=sender.address,
            body=message.body,
            status_callback=sending.status_callback_url(message),
        )
    except SendError as exc:
        try:
            return sending._send_failed(message, exc)
        except sending.RetryLater:
            return _retry_later(message)
    _store_sent(message, result)
    return "sent"
