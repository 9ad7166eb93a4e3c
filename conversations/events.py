"""Applying stored webhook events (SPEC §6): after a 2xx, every event is applied exactly once.

The webhook only stores; this module applies, in worker processes that run side by side.

Lock order. Every path that changes more than one of these rows locks them in this order, so
two transactions never wait on each other in a cycle (a deadlock):

    1. MessageEvent rows (claimed FOR UPDATE SKIP LOCKED: a worker never waits for another's)
    2. Message rows, by id
    3. NumberState rows, by (organization, phone)
    4. NumberFacts rows, by phone
    5. rows that are only inserted, or updated without a lock another path holds while waiting:
       Contact, Conversation, AuditEvent, OrgAlert

The send path (claim a Message, then record the attempt on NumberState and NumberFacts),
reconciliation (`reconciliation.message_apply_status`) and staff actions (a single NumberState)
follow the same order. Inbound processing locks the number's state and facts before it creates the
contact, conversation and message.

Transactions are short: status callbacks are applied set-based, a batch at a time, and a batch
that fails on a transient database error (deadlock, serialization failure, lock timeout, lost
connection) is rolled back whole and tried again later with back-off; inbound messages are
applied one per transaction. Two events about the same thing are applied in the order they
were received: a status event waits for the earlier ones of its message SID, an inbound one for
the earlier ones from its number (a retried STOP never lands after a later START).

A lost database session (killed, a failover, a restarted pooler) postpones what it was applying,
on a new session; when even that fails, or the next events cannot be chosen, the run stops with
DatabaseUnavailable and the events stay stored, to be applied by a later run.

Only an event that can never apply is given up on, with `not_applied` set: a malformed payload,
a status for a message SID still unknown after 72 hours, a message to a number that is none of
our senders, or one that kept failing on a non-transient error. Those are listed in the admin
(with a Retry action) and raise an org alert when the org is known.
"""

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.fields.json import KT
from django.utils import timezone

from config.bulk import bulk_update
from contacts.models import Organization
from conversations import breaker, inbound
from conversations import status as lifecycle
from conversations.models import Message, MessageEvent
from deliverability import catalogue, outcomes
from deliverability.models import NumberFacts, NumberState, OrgAlert
from deliverability.services import alert_raise

log = logging.getLogger(__name__)

Kind = MessageEvent.Kind

STATUS_BATCH = 200
UNKNOWN_MESSAGE_PATIENCE = timedelta(hours=72)  # a callback may beat our save of the SID
MAX_FAILED_ATTEMPTS = 5  # for non-transient errors; transient ones are retried until they pass
MAX_SID_LENGTH = 34  # Twilio's SIDs: two letters and 32 hex digits
MAX_FROM_LENGTH = 64  # Message.from_number

# What a database says when trying again later may succeed.
TRANSIENT = (OperationalError, InterfaceError)


def backoff(attempts, base=5.0, cap=600.0):
    """Seconds before the next try: about 5, 10, 20 … up to 10 minutes, with jitter."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2 ** min(attempts, 16))


# Choosing what to apply -----------------------------------------------------------------------


def _applicable(kind, now):
    """Events of `kind` due now whose earlier events about the same thing are all applied."""
    pending = MessageEvent.objects.filter(kind=kind, processed_at__isnull=True)
    earlier = pending.filter(
        Q(received_at__lt=OuterRef("received_at"))
        | Q(received_at=OuterRef("received_at"), pk__lt=OuterRef("pk"))
    )
    if kind == Kind.STATUS:
        earlier = earlier.filter(provider_sid=OuterRef("provider_sid")).exclude(provider_sid="")
    else:
        # By the expression of the event_inbound_pending index.
        earlier = earlier.annotate(sender=KT("payload__From")).filter(sender=OuterRef("sender"))
        pending = pending.annotate(sender=KT("payload__From"))
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return pending.filter(due).exclude(Exists(earlier)).order_by("received_at", "pk")


def _claim(kind, now, limit):
    return list(_applicable(kind, now).select_for_update(skip_locked=True, of=("self",))[:limit])


def pending_count():
    return MessageEvent.objects.filter(processed_at__isnull=True).count()


def next_retry_in(now=None):
    """Seconds until the earliest postponed event is due, or None when none waits."""
    now = now or timezone.now()
    first = (
        MessageEvent.objects.filter(processed_at__isnull=True, next_attempt_at__isnull=False)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if first is None:
        return None
    return max(0.0, (first - now).total_seconds())


# The entry point ------------------------------------------------------------------------------


def events_apply_pending(limit=5000):
    """Apply stored events that are due: inbound messages first, then status callbacks.

    Returns how many events were looked at. Safe to run in any number of processes at once.
    Raises DatabaseUnavailable when the database stops answering (nothing is lost: the events
    stay stored and unprocessed).
    """
    done = 0
    while done < limit:
        handled = _apply_next_inbound()
        if handled is None:
            break
        done += handled
    while done < limit:
        handled = _apply_next_status_batch(min(STATUS_BATCH, limit - done))
        if handled is None:
            break
        done += handled
    return done


class DatabaseUnavailable(Exception):
    """The database did not answer: processing stops for now; the events stay stored."""


def _reconnect_if_lost():
    """After an error on a session that is gone, the next statement opens a new one instead of
    failing on the dead one (never inside a transaction the caller holds)."""
    if connection.errors_occurred and not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def _claim_failed(exc):
    """Choosing the next events failed: the run ends (the next one starts on a new session)."""
    _reconnect_if_lost()
    raise DatabaseUnavailable(str(exc)) from exc


# Inbound messages, one per transaction --------------------------------------------------------


def _apply_next_inbound():
    """Apply the next due inbound event. Returns 1, 0 (postponed) or None (nothing due)."""
    claimed = None
    try:
        with transaction.atomic():
            events = _claim(Kind.INBOUND, timezone.now(), 1)
            if not events:
                return None
            claimed = events[0]
            _apply_inbound(claimed)
        return 1
    except TRANSIENT as exc:
        if claimed is None:
            _claim_failed(exc)
        return _postponed([claimed.pk], exc)
    except Exception as exc:
        _failed(claimed, exc)
        return 1


def _apply_inbound(event):
    linked = (event.message_id, event.organization_id)
    problem = _inbound_problem(event.payload)
    if problem:
        outcome, applied = f"malformed: {problem}", False
    else:
        outcome = inbound.inbound_apply(event)
        applied = outcome != inbound.NOT_OUR_NUMBER
    if not applied:
        event.message_id, event.organization_id = linked
    _finish(event, outcome, applied=applied)


def _inbound_problem(payload):
    sid = payload.get("MessageSid") or payload.get("SmsSid") or ""
    if not sid:
        return "no MessageSid"
    if len(sid) > MAX_SID_LENGTH:
        return "MessageSid too long"
    if len(payload.get("From") or "") > MAX_FROM_LENGTH:
        return "From too long"
    if not payload.get("From"):
        return "no From"
    return ""


# Status callbacks, set-based, a batch per transaction -----------------------------------------


@dataclass
class _Report:
    """What one status callback says."""

    sid: str
    status: str
    our_id: int | None
    error_code: int | None
    raw_error: str
    done_at: object


def _read_report(event):
    """The callback's content, or a string saying why it can never apply."""
    params = event.payload
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    status = event.status or params.get("MessageStatus") or params.get("SmsStatus") or ""
    our_id = _small_int((params.get("_query") or {}).get("m"))
    if not sid and our_id is None:
        return "no MessageSid"
    if len(sid) > MAX_SID_LENGTH:
        return "MessageSid too long"
    if status not in lifecycle.RANK:
        return f"unknown status {status[:20]!r}"
    raw_error = (params.get("ErrorCode") or "").strip()
    return _Report(
        sid=sid,
        status=status,
        our_id=our_id,
        error_code=event.error_code,
        raw_error=raw_error,
        done_at=lifecycle.parse_dlr_done_date(params.get("RawDlrDoneDate")),
    )


def _small_int(value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def _apply_next_status_batch(limit):
    """Claim and apply up to `limit` due status events. Returns how many, or None if none."""
    ids = []
    try:
        with transaction.atomic():
            events = _claim(Kind.STATUS, timezone.now(), limit)
            if not events:
                return None
            ids = [event.pk for event in events]
            _apply_status_batch(events)
        return len(ids)
    except TRANSIENT as exc:
        if not ids:
            _claim_failed(exc)
        return _postponed(ids, exc)
    except Exception:
        # Something in the batch cannot apply: each event alone, to find which.
        log.warning("a batch of %s status events failed; applying them one by one", len(ids))
        for pk in ids:
            _apply_one_status(pk)
        return len(ids)


def _apply_one_status(pk):
    claimed = None
    try:
        with transaction.atomic():
            claimed = (
                MessageEvent.objects.filter(pk=pk, processed_at__isnull=True)
                .select_for_update(skip_locked=True, of=("self",))
                .first()
            )
            if claimed is not None:
                _apply_status_batch([claimed])
    except TRANSIENT as exc:
        _postponed([pk], exc)
    except Exception as exc:
        _failed(claimed, exc)


def _apply_status_batch(events):
    """Apply status events (in the order received) inside the caller's transaction."""
    now = timezone.now()
    reports = {event.pk: _read_report(event) for event in events}
    good = [r for r in reports.values() if isinstance(r, _Report)]
    messages = _lock_messages(good)
    by_id = {m.pk: m for m in messages}
    by_sid = {m.provider_sid: m for m in messages if m.provider_sid}

    changed, successes, errors = {}, [], []
    for event in events:
        report = reports[event.pk]
        if not isinstance(report, _Report):
            _mark(event, f"malformed: {report}", now, applied=False)
            continue
        message = _message_of(report, by_id, by_sid)
        if message is None:
            _unknown_message(event, report, now)
            continue
        event.message_id, event.organization_id = message.pk, message.organization_id
        outcome, effect = _move(message, report, now)
        if effect is not None:
            changed[message.pk] = message
            if effect == "success":
                successes.append(message)
            elif effect == "error":
                errors.append((message, report))
        elif outcome.startswith("now"):
            changed[message.pk] = message
        _mark(event, outcome, now)

    if changed:
        bulk_update(changed.values(), _MESSAGE_FIELDS)
    _apply_number_effects(successes, errors)
    if errors:
        # After the commit: the breaker's rows are outside this module's lock order, and a
        # failure there must not undo or repeat what this batch applied (robust: logged).
        failed = [message for message, _ in errors]
        transaction.on_commit(lambda: breaker.errors_recorded(failed), robust=True)
    bulk_update(events, _EVENT_FIELDS)
    for event in events:
        if event.not_applied:
            _alert_not_applied(event)


_MESSAGE_FIELDS = [
    "provider_sid",
    "status",
    "status_changed_at",
    "carrier_done_at",
    "final_at",
    "dispatch",
    "error_code",
    "error_message",
]
_EVENT_FIELDS = [
    "processed_at",
    "outcome",
    "message",
    "organization",
    "attempts",
    "next_attempt_at",
    "not_applied",
]


def _lock_messages(reports):
    ids = {r.our_id for r in reports if r.our_id is not None}
    sids = {r.sid for r in reports if r.sid}
    if not ids and not sids:
        return []
    return list(
        Message.objects.filter(Q(pk__in=ids) | Q(provider_sid__in=sids))
        .select_for_update(of=("self",))
        .order_by("pk")
    )


def _message_of(report, by_id, by_sid):
    """Our message id from the callback URL (a callback can beat the SID's save), else the SID.

    Our id with another SID is not ours to trust."""
    message = by_id.get(report.our_id)
    if message and message.provider_sid and report.sid and message.provider_sid != report.sid:
        message = None
    if message is None and report.sid:
        message = by_sid.get(report.sid)
    return message


def _move(message, report, now):
    """Move a locked message's status forward (in memory). Returns (outcome, effect)."""
    if report.sid and not message.provider_sid:
        message.provider_sid = report.sid
    if not lifecycle.moves_forward(message.status, report.status):
        return f"kept {message.status} (got {report.status})", None
    status = report.status
    message.status = status
    message.status_changed_at = now
    if report.done_at:
        message.carrier_done_at = report.done_at
    if status in Message.Status.FINAL:
        message.final_at = now
        message.dispatch = Message.Dispatch.DONE
    if status in Message.Status.FAILED_OR_UNDELIVERED:
        code = report.error_code
        if code is None and report.raw_error:
            reason = f"Unknown error (code {report.raw_error[:40]})"
            message.error_code, message.error_message = None, reason
            return f"now {status}", None  # a code we cannot read is no number's fault
        info = catalogue.describe(code)
        message.error_code, message.error_message = info.code, info.reason
        return f"now {status}", ("error" if code is not None else None)
    if status in Message.Status.DELIVERED_OR_READ:
        return f"now {status}", "success"
    return f"now {status}", None


def _apply_number_effects(successes, errors):
    """What the outcomes mean for the numbers, in the lock order: states, then facts."""
    if not successes and not errors:
        return
    pairs = sorted(
        {(m.organization_id, m.to_number) for m in successes}
        | {(m.organization_id, m.to_number) for m, _ in errors}
    )
    phones = sorted({phone for _, phone in pairs})
    _ensure_rows(pairs, phones)
    states = {
        (s.organization_id, s.phone): s
        for s in NumberState.objects.filter(
            organization_id__in={org for org, _ in pairs}, phone__in=phones
        )
        .select_for_update()
        .order_by("organization_id", "phone")
    }
    facts = {
        f.phone: f
        for f in NumberFacts.objects.filter(phone__in=phones).select_for_update().order_by("phone")
    }
    states_changed, facts_changed = {}, {}
    for message in successes:
        at = message.sent_at or message.created_at
        state = states[(message.organization_id, message.to_number)]
        if state.record_success(at):
            states_changed[state.pk] = state
        fact = facts[message.to_number]
        if fact.record_heartbeat(at):
            facts_changed[fact.pk] = fact
    if states_changed:
        bulk_update(
            states_changed.values(),
            ["last_success_at", "error_streak", "error_streak_times", "streak_fifth_error_at"],
        )
    if facts_changed:
        bulk_update(facts_changed.values(), ["last_heartbeat_at", "errors_since_heartbeat"])
    if errors:
        orgs = Organization.objects.in_bulk({m.organization_id for m, _ in errors})
        for message, report in sorted(errors, key=lambda e: (e[0].organization_id, e[0].to_number)):
            outcomes.error_apply(
                org=orgs[message.organization_id],
                phone=message.to_number,
                code=report.error_code,
                at=message.sent_at or message.created_at,
                sender_ref=message.from_number,
            )


def _ensure_rows(pairs, phones):
    """The state and facts rows the batch will lock exist (usually since the send)."""
    missing_states = [
        NumberState(organization_id=org, phone=phone) for org, phone in pairs if phone
    ]
    NumberState.objects.bulk_create(missing_states, ignore_conflicts=True)
    NumberFacts.objects.bulk_create([NumberFacts(phone=p) for p in phones], ignore_conflicts=True)


def _unknown_message(event, report, now):
    """A status for a message we cannot find (yet): wait for it up to 72 hours."""
    if now - event.received_at > UNKNOWN_MESSAGE_PATIENCE:
        log.info("status callback for unknown message %s (%s): given up", report.sid, report.status)
        _mark(event, "unknown message (looked for 72 hours)", now, applied=False)
        return
    log.info("status callback for unknown message %s (%s): later", report.sid, report.status)
    event.attempts += 1
    event.next_attempt_at = now + timedelta(seconds=backoff(event.attempts, cap=3600.0))
    event.outcome = "unknown message (looking again)"


# Outcomes -------------------------------------------------------------------------------------


def _mark(event, outcome, now, applied=True):
    event.processed_at = now
    event.outcome = outcome[:200]
    event.not_applied = not applied
    event.next_attempt_at = None


def _finish(event, outcome, applied=True):
    """Record a single event's outcome (inside its transaction)."""
    _mark(event, outcome, timezone.now(), applied=applied)
    event.save(update_fields=_EVENT_FIELDS)
    if not applied:
        _alert_not_applied(event)


def _postponed(ids, exc):
    """A transient failure: the events stay unprocessed and are tried again after a back-off.

    Returns 0. If even that cannot be written (the database is gone), they are simply left
    as they were: still unprocessed, a later run takes them again."""
    log.warning("applying %s event(s) failed for now, will retry: %s", len(ids), exc)
    _reconnect_if_lost()
    try:
        with transaction.atomic():
            events = list(
                MessageEvent.objects.filter(pk__in=ids, processed_at__isnull=True)
                .select_for_update(of=("self",))
                .order_by("pk")
            )
            now = timezone.now()
            for event in events:
                event.attempts += 1
                event.next_attempt_at = now + timedelta(seconds=backoff(event.attempts - 1))
                event.outcome = f"retrying: {exc.__class__.__name__}"[:200]
            bulk_update(events, ["attempts", "next_attempt_at", "outcome"])
    except DatabaseError as again:
        log.warning("could not postpone %s event(s): %s", len(ids), again)
        _reconnect_if_lost()
        raise DatabaseUnavailable(str(again)) from again
    return 0


def _failed(event, exc):
    """A non-transient error: tried again a few times (a fix may be deployed meanwhile), then
    given up on, visibly."""
    if event is None:
        raise exc
    log.exception("event %s could not be applied", event.pk)
    _reconnect_if_lost()
    try:
        with transaction.atomic():
            current = (
                MessageEvent.objects.filter(pk=event.pk, processed_at__isnull=True)
                .select_for_update(of=("self",))
                .first()
            )
            if current is None:
                return
            current.attempts += 1
            reason = f"error: {exc.__class__.__name__}: {exc}"[:200]
            if current.attempts >= MAX_FAILED_ATTEMPTS:
                # The org found before the failure (it existed before; a message made in the
                # rolled-back transaction did not survive it).
                current.organization_id = event.organization_id
                _finish(current, reason, applied=False)
                return
            current.outcome = reason
            current.next_attempt_at = timezone.now() + timedelta(
                seconds=backoff(current.attempts - 1)
            )
            current.save(update_fields=["attempts", "next_attempt_at", "outcome"])
    except DatabaseError as again:
        _reconnect_if_lost()
        raise DatabaseUnavailable(str(again)) from again


def _alert_not_applied(event):
    if not event.organization_id:
        return
    org = Organization.objects.filter(pk=event.organization_id).first()
    if org is None:
        return
    alert_raise(
        org=org,
        kind=OrgAlert.Kind.EVENT_NOT_APPLIED,
        message="A message from Twilio could not be applied "
        f"({event.get_kind_display().lower()}: {event.outcome[:120]}). "
        "An administrator can look at it and retry it in the admin.",
    )


def events_retry(ids):
    """Put events that were given up on back into the queue (the admin's Retry action)."""
    return MessageEvent.objects.filter(pk__in=ids, not_applied=True).update(
        processed_at=None, not_applied=False, attempts=0, next_attempt_at=None, outcome=""
    )
