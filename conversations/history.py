"""Importing the Twilio account's message history (SPEC §2–§4): what an organization moving to
Reachable already has at Twilio, applied to its numbers before the first send.

The account's Messages list is read one day at a time, oldest day first, and each day's
messages oldest first, keeping only those to or from this organization's senders (one Twilio
account may serve several organizations). Each message is applied in its own transaction
together with a HistorySeen row, so that an interrupted import resumes where it stopped and a
second import changes nothing:

- an inbound reply goes through the live classifier (deliverability.replies) and the live
  consent rules (deliverability.consent): STOP opts out, START opts back in, in the order they
  were sent (a STOP followed by a START ends opted in). No confirmation text is ever sent, and
  a reply whose meaning is unclear is listed in the import's report for staff, not acted on;
- 21610 opts the number out with reason `carrier_stop`;
- an error of the catalogue's `unreachable` category joins the number's error history (the
  error rules of SPEC §5 read it, with its own date);
- an error that flags a number Invalid (30005, 21614, …) sets the flag only when it is less
  than 80 days old and newer than the number's latest heartbeat (a delivery or a reply: the
  number answered after the error, so the error is disproved). Those flags are decided after
  the whole window is read, since a later delivery can come on a later day;
- a delivery and a reply are heartbeats, and a delivered or sent message ends the number's
  error streak as a live one does.

Locks follow conversations.events' order: every change goes through the number's state
(NumberState's transitions) and deliverability.outcomes (the state, then the facts); the
import's own rows come last.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from config.celery import enqueue_on_commit
from contacts.models import Contact
from contacts.phones import parse_phone
from conversations.backends import get_backend
from conversations.models import HistoryImport, HistorySeen, Sender
from deliverability import catalogue, consent, outcomes, replies
from deliverability.catalogue import Effect
from deliverability.models import NumberFacts, NumberState, OptOutReason

log = logging.getLogger(__name__)

MAX_DAYS = 400  # Twilio keeps about 400 days of messages
DEFAULT_DAYS = 400
FLAG_WINDOW = timedelta(days=80)  # older errors set no flag (SPEC §5's 80 days)
LEASE = timedelta(minutes=5)
AMBIGUOUS_KEPT = 500  # replies listed in the report; the count goes on beyond

State = HistoryImport.State

# What the report counts, in the order staff read it.
REPORT_LABELS = {
    "deliveries": "Deliveries (heartbeats)",
    "sent": "Sent without a later status",
    "replies": "Replies (heartbeats)",
    "opt_outs": "Opted out by a reply (STOP)",
    "opt_ins": "Opted back in by a reply (START)",
    "ambiguous": "Replies with an unclear meaning (listed below, not acted on)",
    "carrier_stops": "Opted out by a carrier STOP (21610)",
    "errors": "Delivery errors added to the error history",
    "flags_set": "Flagged Invalid by an error (30005, 21614, …)",
    "flags_too_old": "Errors older than 80 days (no flag)",
    "flags_disproved": "Errors older than the number's latest delivery or reply (no flag)",
    "other_errors": "Errors about the content or the sender (nothing on the number)",
    "already_opted_out": "Carrier STOPs for numbers already opted out",
    "unchanged": "STOP or START that changed nothing (already so)",
    "blocked": "Replies from numbers marked Invalid",
    "not_a_number": "Messages with a short code or a name instead of a number",
    "already_imported": "Already imported before",
}


class HistoryRefused(Exception):
    """An import that cannot start; the text is for staff."""


# Starting ------------------------------------------------------------------------------------


def history_import_start(*, org, days=DEFAULT_DAYS, by=None, run_in_background=True, now=None):
    """Start an import of the last `days` days, or resume the organization's unfinished one.

    With `run_in_background` the work is a task on the maintenance queue; the command line
    runs it itself.
    """
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise HistoryRefused(f"Choose between 1 and {MAX_DAYS} days (Twilio keeps about 400).")
    scope = _scope(org)
    if not scope.numbers and not scope.services:
        raise HistoryRefused("This organization has no sending number: there is no history.")
    today = (now or timezone.now()).astimezone(UTC).date()
    record = HistoryImport.objects.exclude(state=State.FINISHED).filter(organization=org).first()
    if record is None:
        first_day = today - timedelta(days=days - 1)
        try:
            with transaction.atomic():
                record = HistoryImport.objects.create(
                    organization=org,
                    started_by=by,
                    days=days,
                    first_day=first_day,
                    last_day=today,
                    cursor_day=first_day,
                )
        except IntegrityError:  # Started at the same moment elsewhere: that one goes on.
            record = HistoryImport.objects.exclude(state=State.FINISHED).get(organization=org)
    if run_in_background:
        enqueue_on_commit("conversations.tasks.import_twilio_history", record.pk)
    return record


# Running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """This organization's senders: whose messages in the account's history are its own."""

    numbers: frozenset
    services: frozenset

    def member_number(self, message):
        """The other party of `message` when it is this organization's, else None."""
        if message.is_inbound:
            ours = message.to in self.numbers or message.messaging_service_sid in self.services
            return message.from_ if ours else None
        ours = message.from_ in self.numbers or message.messaging_service_sid in self.services
        return message.to if ours else None


def _scope(org):
    senders = Sender.objects.filter(organization=org)
    return _Scope(
        numbers=frozenset(n for n in senders.values_list("phone_number", flat=True) if n),
        services=frozenset(s for s in senders.values_list("messaging_service_sid", flat=True) if s),
    )


def _claim(import_id, now):
    """Take the import for this worker, unless another one holds it (a lease, renewed)."""
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    return (
        HistoryImport.objects.filter(free, pk=import_id)
        .exclude(state=State.FINISHED)
        .update(lease_until=now + LEASE, state=State.RUNNING, error="")
    )


def history_import_run(import_id, backend=None):
    """Read and apply the import's remaining days; returns the import, or None when another
    worker holds it (or it is finished). Raises what interrupted it, after recording it."""
    if not _claim(import_id, timezone.now()):
        return None
    record = HistoryImport.objects.select_related("organization").get(pk=import_id)
    backend = backend or get_backend()
    run = _Run(record, _scope(record.organization))
    try:
        while record.cursor_day <= record.last_day:
            run.read_day(backend, record.cursor_day)
        run.apply_pending_flags(timezone.now())
    except Exception as exc:
        log.warning("the history import %s stopped: %s", record.pk, exc)
        HistoryImport.objects.filter(pk=record.pk).update(
            state=State.INTERRUPTED,
            lease_until=None,
            error=f"{exc.__class__.__name__}: {exc}"[:300],
        )
        raise
    HistoryImport.objects.filter(pk=record.pk).update(
        state=State.FINISHED, finished_at=timezone.now(), lease_until=None
    )
    record.refresh_from_db()
    return record


@dataclass(frozen=True)
class _Reply:
    """What deliverability.consent reads of an inbound message."""

    from_number: str
    body: str
    created_at: datetime
    pk: None = None


class _Run:
    def __init__(self, record, scope):
        self.record = record
        self.org = record.organization
        self.scope = scope

    def count(self, key, n=1):
        self.record.report[key] = self.record.report.get(key, 0) + n

    def read_day(self, backend, day):
        start = datetime.combine(day, time.min, tzinfo=UTC)
        listed = backend.history(after=start, before=start + timedelta(days=1))
        ours = [(m, self.scope.member_number(m)) for m in listed]
        ours = sorted(
            ((m, n) for m, n in ours if n), key=lambda pair: (pair[0].sent_at, pair[0].sid)
        )
        for message, number in ours:
            self.apply_once(message, number)
        record = self.record
        record.cursor_day = day + timedelta(days=1)
        # The lease is renewed with the progress: a slow import is not taken by another worker.
        record.lease_until = timezone.now() + LEASE
        record.save(update_fields=["cursor_day", "lease_until", "messages_read", "report"])

    def apply_once(self, message, number):
        record = self.record
        record.messages_read += 1
        with transaction.atomic():
            try:
                with transaction.atomic():
                    HistorySeen.objects.create(
                        organization=self.org, sid=message.sid, history_import=record
                    )
            except IntegrityError:
                self.count("already_imported")
                return
            phone = parse_phone(number, self.org.default_region).e164
            if not phone:
                self.count("not_a_number")
            elif message.is_inbound:
                self.apply_reply(message, phone)
            else:
                self.apply_outbound(message, phone)
            record.messages_applied += 1
            record.lease_until = timezone.now() + LEASE
            record.save(
                update_fields=[
                    "messages_read",
                    "messages_applied",
                    "report",
                    "ambiguous",
                    "pending_flags",
                    "lease_until",
                ]
            )

    def apply_outbound(self, message, phone):
        at, org = message.sent_at, self.org
        if message.status in ("queued", "accepted", "scheduled", "sending", "canceled"):
            return
        outcomes.record_attempts(org=org, phones=[phone], at=at)
        if message.status in ("delivered", "read", "partially_delivered"):
            outcomes.record_success(org=org, phone=phone, at=at, delivered=True)
            self.count("deliveries")
        elif message.status == "sent":
            outcomes.record_success(org=org, phone=phone, at=at, delivered=False)
            self.count("sent")
        elif message.error_code is not None:
            self.apply_error(message, phone)

    def apply_error(self, message, phone):
        info = catalogue.describe(message.error_code)
        cause = f"Twilio {info.code} in the message history ({message.sent_at:%Y-%m-%d})"
        if info.effect == Effect.CARRIER_STOP:
            if NumberState.objects.of(org=self.org, phone=phone).is_opted_out:
                self.count("already_opted_out")
                return
            NumberState.objects.of(org=self.org, phone=phone).opt_out(
                reason=OptOutReason.CARRIER_STOP, cause=cause
            )
            self.count("carrier_stops")
        elif info.effect == Effect.COUNT_ERROR:
            outcomes.record_number_error(
                org=self.org, phone=phone, at=message.sent_at, code=info.code or message.error_code
            )
            self.count("errors")
        elif info.effect == Effect.AUTO_INVALID:
            # Decided once the whole window is read: a later delivery disproves it.
            self.record.pending_flags[phone] = {
                "code": info.code,
                "at": message.sent_at.isoformat(),
            }
        else:
            self.count("other_errors")

    def apply_reply(self, message, phone):
        org = self.org
        reply = replies.classify(message.body)
        state = NumberState.objects.of(org=org, phone=phone)
        if state.is_invalid and reply.intent != replies.Intent.OPT_OUT:
            self.count("blocked")  # As live: stored, not acted on; an opt-out still counts.
            return
        if not state.is_invalid:
            outcomes.record_heartbeat(phone=phone, at=message.sent_at)
            self.count("replies")
        if reply.intent in (replies.Intent.OPT_OUT, replies.Intent.OPT_IN):
            contact = (
                Contact.objects.filter(organization=org, phone_e164=phone).order_by("id").first()
            )
            # The result's confirm_opt_out is not used: an imported opt-out is never confirmed.
            consent.reply_apply(
                org=org,
                contact=contact,
                message=_Reply(phone, message.body, message.sent_at),
                reply=reply,
            )
            now_opted_out = NumberState.objects.of(org=org, phone=phone).is_opted_out
            if now_opted_out == state.is_opted_out:
                self.count("unchanged")  # a STOP when opted out, a START when subscribed
            else:
                self.count("opt_outs" if now_opted_out else "opt_ins")
        elif reply.intent == replies.Intent.REVIEW:
            self.count("ambiguous")
            if len(self.record.ambiguous) < AMBIGUOUS_KEPT:
                self.record.ambiguous.append(
                    {
                        "phone": phone,
                        "sent_at": message.sent_at.isoformat(),
                        "body": message.body[:300],
                        "rule": replies.RULE_LABELS.get(reply.rule, reply.rule),
                        "kind": reply.review_kind or "",
                    }
                )

    def apply_pending_flags(self, now):
        """Flag what the window's errors say, unless too old or disproved by a heartbeat."""
        record = self.record
        for phone, error in sorted(record.pending_flags.items()):
            at = datetime.fromisoformat(error["at"])
            facts = NumberFacts.objects.filter(phone=phone).first()
            with transaction.atomic():
                if at < now - FLAG_WINDOW:
                    self.count("flags_too_old")
                elif facts and facts.last_heartbeat_at and at < facts.last_heartbeat_at:
                    self.count("flags_disproved")
                else:
                    info = catalogue.describe(error["code"])
                    NumberState.objects.of(org=self.org, phone=phone).flag_automatically(
                        code=info.code,
                        reason=info.reason,
                        cause=f"Twilio {info.code} in the message history ({at:%Y-%m-%d})",
                    )
                    self.count("flags_set")
                del record.pending_flags[phone]
                record.save(update_fields=["pending_flags", "report"])


def report_rows(record):
    """The import's report as (label, count) rows, in reading order, without zeros."""
    return [
        (label, record.report[key])
        for key, label in REPORT_LABELS.items()
        if record.report.get(key)
    ]
