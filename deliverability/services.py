"""Every change to a number's state (SPEC §2, §4, §5), each audited, each in one place.

Pages, tasks and webhooks call these functions; nothing else writes NumberState. Each function
takes keyword arguments, locks the state row it changes, and records an AuditEvent whose actor is
the staff user (`by`) or the system with its cause ("Twilio 21614", "deactivation list ...").
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.celery import enqueue_on_commit
from contacts.models import Contact, Organization
from contacts.queries import forget_counts
from deliverability import catalogue
from deliverability.catalogue import Effect
from deliverability.models import (
    GLOBAL_ERRORS_THRESHOLD,
    RECENT_ERRORS_THRESHOLD,
    AuditEvent,
    InvalidSource,
    NumberFacts,
    NumberState,
    OptOutReason,
    OrgAlert,
)

MAX_PAUSE = timedelta(days=30)
STREAK_TIMES_KEPT = RECENT_ERRORS_THRESHOLD
GLOBAL_TIMES_KEPT = 2 * GLOBAL_ERRORS_THRESHOLD  # the rule needs threshold + 1: ample


class StateChangeRefused(Exception):
    """A state change the rules do not allow; the message is written for staff."""


Action = AuditEvent.Action


def snapshot(state):
    """The parts of a number's state that staff care about, for the audit trail."""
    return {
        "invalid_source": state.invalid_source,
        "invalid_code": state.invalid_code,
        "invalid_reason": state.invalid_reason,
        "opt_out_reason": state.opt_out_reason,
        "opted_out_at": state.opted_out_at.isoformat() if state.opted_out_at else None,
        "paused_until": state.paused_until.isoformat() if state.paused_until else None,
    }


def number_state(*, org, phone):
    """The state of `phone` in `org`, unsaved and blank when nothing was ever recorded."""
    return NumberState.objects.filter(organization=org, phone=phone).first() or NumberState(
        organization=org, phone=phone
    )


def locked_state(org, phone):
    """The state row of (org, phone), created if missing and locked for this transaction."""
    state = NumberState.objects.select_for_update().filter(organization=org, phone=phone).first()
    if state is None:
        # INSERT … ON CONFLICT DO NOTHING: another transaction may be creating it right now.
        NumberState.objects.bulk_create(
            [NumberState(organization=org, phone=phone)], ignore_conflicts=True
        )
        state = NumberState.objects.select_for_update().get(organization=org, phone=phone)
    return state


def _locked_facts(phone):
    """The global facts row of `phone`, created if missing and locked for this transaction."""
    facts = NumberFacts.objects.select_for_update().filter(phone=phone).first()
    if facts is None:
        NumberFacts.objects.bulk_create([NumberFacts(phone=phone)], ignore_conflicts=True)
        facts = NumberFacts.objects.select_for_update().get(phone=phone)
    return facts


def number_lock(*, org, phone):
    """Lock the number's state in `org`, then its global facts (the lock order of
    conversations.events), creating them if missing. Returns (state, facts)."""
    return locked_state(org, phone), _locked_facts(phone)


@dataclass(frozen=True)
class Actor:
    """Who changes a state: a staff user, or the system and its cause."""

    user: object = None
    cause: str = ""
    note: str = ""
    source_page: str = ""
    contact: Contact | None = None


def audit_only(state, action, actor):
    """Record a decision that leaves the number's state as it is (a review dismissed)."""
    return _audit(state, action, snapshot(state), actor)


def _audit(state, action, before, actor):
    forget_counts(state.organization_id)  # the lists' Active/Invalid/Opted-Out counts changed
    return AuditEvent.objects.create(
        organization_id=state.organization_id,
        phone=state.phone,
        contact=actor.contact,
        actor=actor.user,
        system_cause=actor.cause,
        action=action,
        before=before,
        after=snapshot(state),
        note=actor.note,
        source_page=actor.source_page,
    )


def _require_phone(phone):
    if not phone:
        raise StateChangeRefused("This contact has no valid phone number.")


# Invalid flag ------------------------------------------------------------------------------


@transaction.atomic
def number_mark_invalid(*, org, phone, by, note="", source_page="", contact=None):
    """Staff flag a number invalid by hand (no failed reason)."""
    _require_phone(phone)
    state = locked_state(org, phone)
    if state.is_invalid:
        raise StateChangeRefused("This number is already marked as invalid.")
    before = snapshot(state)
    state.invalid_source = InvalidSource.MANUAL
    state.invalid_code = ""
    state.invalid_reason = ""
    state.invalid_at = timezone.now()
    state.save()
    _audit(state, Action.MARK_INVALID, before, Actor(by, "", note, source_page, contact))
    return state


@transaction.atomic
def number_mark_valid(*, org, phone, by, note="", source_page="", contact=None):
    """Staff reverse a manual flag. An automatic flag is refused with the way out."""
    _require_phone(phone)
    state = locked_state(org, phone)
    if not state.is_invalid:
        raise StateChangeRefused("This number is not marked as invalid.")
    if state.invalid_source == InvalidSource.AUTOMATIC:
        raise StateChangeRefused(
            f"This number was flagged automatically ({state.invalid_reason}) and cannot be "
            "marked valid. Update the phone number in the member's profile instead."
        )
    before = snapshot(state)
    _clear_invalid(state)
    state.save()
    _audit(state, Action.MARK_VALID, before, Actor(by, "", note, source_page, contact))
    return state


def _clear_invalid(state):
    state.invalid_source = ""
    state.invalid_code = ""
    state.invalid_reason = ""
    state.invalid_at = None


@transaction.atomic
def number_flag_automatically(*, org, phone, code, reason, cause):
    """The system flags a number invalid: a failed send's code, or "lookup" for a line type.

    A manual flag becomes automatic (it now has a failed reason); an existing automatic flag
    is left as it is.
    """
    state = locked_state(org, phone)
    if state.invalid_source == InvalidSource.AUTOMATIC:
        return state
    before = snapshot(state)
    state.invalid_source = InvalidSource.AUTOMATIC
    state.invalid_code = str(code)
    state.invalid_reason = reason
    state.invalid_at = timezone.now()
    state.save()
    _audit(state, Action.AUTO_INVALID, before, Actor(cause=cause))
    return state


# Opt-out -------------------------------------------------------------------------------------


@transaction.atomic
def number_opt_out(*, org, phone, reason, by=None, cause="", note="", source_page="", contact=None):
    """Opt a number out with a reason. An existing opt-out keeps its first reason and date.

    A pause ends here: an opt-out supersedes it (a deactivation during a pause is an opt-out).
    """
    _require_phone(phone)
    if reason not in OptOutReason.values:
        raise ValueError(f"unknown opt-out reason {reason!r}")
    if reason == OptOutReason.STAFF and by is None:
        raise ValueError("a staff opt-out needs the staff user")
    state = locked_state(org, phone)
    if state.is_opted_out:
        if by is not None:
            raise StateChangeRefused("This number is already opted out.")
        return state
    before = snapshot(state)
    state.opt_out_reason = reason
    state.opted_out_at = timezone.now()
    state.paused_until = None
    state.save()
    _audit(state, Action.OPT_OUT, before, Actor(by, cause, note, source_page, contact))
    return state


class OptIn:
    """How an opt-in reaches us; decides which opt-outs it may lift (SPEC §2, §3)."""

    START = "start"  # START (or COMENZAR) from the number itself: lifts every reason.
    KEYWORD = "keyword"  # YES, UNSTOP: every reason but a wrong number.
    ANY_INBOUND = "any_inbound"  # Any message, when the org enables it: lifts a STOP keyword.
    REVIEW = "review"  # Resubscribe wording, taken by staff in the Review queue.
    UNDO = "undo"  # Staff undo their own "Opt out" review decision within minutes.
    STAFF = "staff"  # A manager, with a note: lifts only a staff-made opt-out.


LIFTABLE = {
    OptIn.START: set(OptOutReason.values),
    OptIn.KEYWORD: set(OptOutReason.values) - {OptOutReason.WRONG_NUMBER},
    OptIn.ANY_INBOUND: {OptOutReason.STOP_KEYWORD},
    OptIn.REVIEW: {OptOutReason.STOP_KEYWORD, OptOutReason.STAFF},
    OptIn.UNDO: {OptOutReason.STOP_KEYWORD},
    OptIn.STAFF: {OptOutReason.STAFF},
}


def may_lift_opt_out(state, via):
    return state.is_opted_out and state.opt_out_reason in LIFTABLE[via]


@transaction.atomic
def number_opt_in(*, org, phone, via, by=None, cause="", note="", source_page="", contact=None):
    """Lift an opt-out under the rules of SPEC §2; staff only a staff-made one, with a note."""
    _require_phone(phone)
    if via == OptIn.STAFF and not note.strip():
        raise StateChangeRefused("Please say why the opt-out is lifted (a note is required).")
    state = locked_state(org, phone)
    if not state.is_opted_out:
        if via == OptIn.STAFF:
            raise StateChangeRefused("This number is not opted out.")
        return state
    if not may_lift_opt_out(state, via):
        if via == OptIn.STAFF:
            raise StateChangeRefused(
                f"Only the contact can lift this opt-out ({state.get_opt_out_reason_display()}): "
                "they must text START to your number."
            )
        return state
    before = snapshot(state)
    state.opt_out_reason = ""
    state.opted_out_at = None
    state.save()
    _audit(state, Action.OPT_IN, before, Actor(by, cause, note, source_page, contact))
    return state


# Pause ---------------------------------------------------------------------------------------


@transaction.atomic
def number_pause(*, org, phone, until, by, note="", source_page="", contact=None):
    """Stop messaging for a while (at most 30 days); the contact stays subscribed."""
    _require_phone(phone)
    now = timezone.now()
    if until <= now:
        raise StateChangeRefused("A pause must end in the future.")
    if until > now + MAX_PAUSE:
        raise StateChangeRefused("A pause can last at most 30 days.")
    state = locked_state(org, phone)
    if state.is_opted_out:
        raise StateChangeRefused("This number is opted out; there is nothing to pause.")
    before = snapshot(state)
    state.paused_until = until
    state.save()
    _audit(state, Action.PAUSE, before, Actor(by, "", note, source_page, contact))
    return state


@transaction.atomic
def number_resume(*, org, phone, by, note="", source_page="", contact=None):
    _require_phone(phone)
    state = locked_state(org, phone)
    if not state.is_paused(timezone.now()):
        raise StateChangeRefused("Messaging to this number is not paused.")
    before = snapshot(state)
    state.paused_until = None
    state.save()
    _audit(state, Action.RESUME, before, Actor(by, "", note, source_page, contact))
    return state


def pauses_end_expired(now=None):
    """End every pause whose time has come (the periodic task). Returns how many ended."""
    now = now or timezone.now()
    ended = 0
    expired = NumberState.objects.filter(paused_until__lte=now).values_list("pk", flat=True)
    for pk in list(expired[:10000]):
        with transaction.atomic():
            state = NumberState.objects.select_for_update().filter(pk=pk).first()
            if state is None or state.paused_until is None or state.paused_until > now:
                continue
            before = snapshot(state)
            state.paused_until = None
            state.save()
            _audit(state, Action.PAUSE_ENDED, before, Actor(cause="pause ended"))
            ended += 1
    return ended


# Re-check and phone changes ------------------------------------------------------------------


def may_recheck(state):
    """Only automatic flags a lookup can disprove (21614, 30006, lookup) may be re-checked."""
    return (
        state.invalid_source == InvalidSource.AUTOMATIC
        and state.invalid_code in catalogue.RECHECKABLE_INVALID_CODES
    )


def number_recheck(*, org, phone, by, lookup, note="", source_page="", contact=None):
    """A fresh line-type lookup; clears an automatic flag only when the number is SMS-capable.

    `lookup(phone)` returns a deliverability.lookups.LookupResult (the caller picks the
    backend). Returns (state, result). The lookup runs outside the transaction: it calls Twilio.
    """
    _require_phone(phone)
    state = number_state(org=org, phone=phone)
    if not may_recheck(state):
        raise StateChangeRefused(
            "Re-check applies only to numbers flagged as landline or unreachable. "
            "Update the phone number in the member's profile instead."
        )
    result = lookup(phone)
    facts_record_lookup(phone=phone, result=result)
    with transaction.atomic():
        state = locked_state(org, phone)
        before = snapshot(state)
        actor = Actor(by, "", note, source_page, contact)
        if may_recheck(state) and result.is_sms_capable and result.line_type != "unknown":
            _clear_invalid(state)
            state.save()
            _audit(state, Action.AUTO_VALID, before, actor)
        else:
            _audit(state, Action.RECHECK, before, actor)
    return state, result


@transaction.atomic
def contact_change_phone(*, contact, raw, by, note="", source_page=""):
    """The contact takes a new number with whatever state it has in the org (usually none).

    The old number keeps its state (a flag belongs to the number, not the person); the
    conversation stays with the contact.
    """
    old_raw, old_e164 = contact.phone_raw, contact.phone_e164
    parsed = contact.set_phone(raw)
    contact.save(update_fields=["phone_raw", "phone_e164", "phone_status", "phone_error"])
    forget_counts(contact.organization_id)  # the contact may now be in another tab
    AuditEvent.objects.create(
        organization_id=contact.organization_id,
        phone=contact.phone_e164 or old_e164,  # E.164 only; the raw values are in before/after
        contact=contact,
        actor=by,
        action=Action.PHONE_CHANGED,
        before={"phone_raw": old_raw, "phone_e164": old_e164},
        after={"phone_raw": contact.phone_raw, "phone_e164": contact.phone_e164},
        note=note,
        source_page=source_page,
    )
    if parsed.is_valid and parsed.e164 != old_e164:
        enqueue_on_commit("deliverability.tasks.lookup_number", parsed.e164)
    return parsed


# Error history and heartbeats (SPEC §5) ------------------------------------------------------


def record_attempts(*, org, phones, at=None):
    """A send was attempted to each of `phones`: the 80-day retry rules count from here."""
    at = at or timezone.now()
    phones = sorted({p for p in phones if p})
    if not phones:
        return
    existing = set(
        NumberState.objects.filter(organization=org, phone__in=phones).values_list(
            "phone", flat=True
        )
    )
    NumberState.objects.bulk_create(
        [NumberState(organization=org, phone=p) for p in phones if p not in existing],
        ignore_conflicts=True,
    )
    # Never backwards: an attempt reported late does not hide a later one.
    later = Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lt=at)
    NumberState.objects.filter(later, organization=org, phone__in=phones).update(last_attempt_at=at)
    known = set(NumberFacts.objects.filter(phone__in=phones).values_list("phone", flat=True))
    NumberFacts.objects.bulk_create(
        [NumberFacts(phone=p) for p in phones if p not in known], ignore_conflicts=True
    )
    NumberFacts.objects.filter(later, phone__in=phones).update(last_attempt_at=at)


@transaction.atomic
def record_number_error(*, org, phone, at, code):
    """A number-attributable error of a send attempted at `at`.

    Counts toward the org's streak (unless a success came after the attempt: callbacks arrive
    out of order) and the global count since the latest heartbeat.
    """
    state = locked_state(org, phone)
    if state.last_success_at is None or at > state.last_success_at:
        times = [t for t in state.error_streak_times if t]
        times.append(at.isoformat())
        times.sort(reverse=True)
        state.error_streak_times = times[:STREAK_TIMES_KEPT]
        state.error_streak += 1
        if len(state.error_streak_times) >= RECENT_ERRORS_THRESHOLD:
            fifth = state.error_streak_times[RECENT_ERRORS_THRESHOLD - 1]
            state.streak_fifth_error_at = datetime.fromisoformat(fifth)
    state.last_error_at = max(filter(None, [state.last_error_at, at]))
    state.save()
    facts = _locked_facts(phone)
    times = sorted([*facts.recent_error_times, at.isoformat()], reverse=True)
    facts.recent_error_times = times[:GLOBAL_TIMES_KEPT]
    if facts.last_heartbeat_at is None or at > facts.last_heartbeat_at:
        facts.errors_since_heartbeat += 1
    facts.error_count += 1
    facts.last_error_at = max(filter(None, [facts.last_error_at, at]))
    facts.last_error_code = str(code)
    facts.save()


@transaction.atomic
def record_success(*, org, phone, at, delivered):
    """A sent (final) or delivered outcome of a send attempted at `at` ends the org's streak.

    A delivery is also a heartbeat: the global error count starts again.
    """
    state = locked_state(org, phone)
    if state.record_success(at):
        state.save()
    if delivered:
        record_heartbeat(phone=phone, at=at)


@transaction.atomic
def record_heartbeat(*, phone, at):
    """A sign of life from the number (a delivery, an inbound reply, a click)."""
    facts = _locked_facts(phone)
    if facts.record_heartbeat(at):
        facts.save(update_fields=["last_heartbeat_at", "errors_since_heartbeat", "updated_at"])


# Catalogue effects (SPEC §4) -----------------------------------------------------------------


def error_apply(*, org, phone, code, at=None, sender_ref=""):
    """Apply a Twilio error code to a number through the catalogue; returns its ErrorInfo.

    invalid: automatic Invalid flag. opted_out: carrier_stop opt-out. unreachable (and unknown
    codes): counted toward the error rules; 30006 also asks for a fresh line-type lookup.
    sender: an org alert. content and throughput: nothing on the number (the message shows
    the reason; throughput is retried by the send path).
    """
    info = catalogue.describe(code)
    at = at or timezone.now()
    cause = f"Twilio {info.code if info.code is not None else code}"
    if info.effect == Effect.AUTO_INVALID and phone:
        number_flag_automatically(
            org=org, phone=phone, code=info.code, reason=info.reason, cause=cause
        )
    elif info.effect == Effect.CARRIER_STOP and phone:
        number_opt_out(org=org, phone=phone, reason=OptOutReason.CARRIER_STOP, cause=cause)
    elif info.effect == Effect.COUNT_ERROR and phone:
        record_number_error(org=org, phone=phone, at=at, code=info.code or code)
        if info.code == 30006:
            enqueue_on_commit("deliverability.tasks.lookup_number", phone, True)
    elif info.effect == Effect.SENDER_ALERT:
        alert_raise(
            org=org,
            kind=OrgAlert.Kind.SENDER_ERROR,
            sender_ref=sender_ref,
            error_code=str(info.code),
            message=f"Sending from {sender_ref or 'a sender'} failed: {info.reason}. "
            "Check the number's registration in Twilio.",
        )
    return info


def alert_raise(*, org, kind, message, sender_ref="", error_code=""):
    """Open an org alert, or count one more occurrence of the same open alert."""
    with transaction.atomic():
        updated = OrgAlert.objects.filter(
            organization=org,
            kind=kind,
            sender_ref=sender_ref,
            error_code=error_code,
            resolved_at__isnull=True,
        ).update(occurrences=F("occurrences") + 1, last_seen_at=timezone.now(), message=message)
        if updated:
            return
        try:
            with transaction.atomic():
                OrgAlert.objects.create(
                    organization=org,
                    kind=kind,
                    sender_ref=sender_ref,
                    error_code=error_code,
                    message=message,
                )
        except IntegrityError:  # Raised concurrently by another worker: count it there.
            OrgAlert.objects.filter(
                organization=org,
                kind=kind,
                sender_ref=sender_ref,
                error_code=error_code,
                resolved_at__isnull=True,
            ).update(occurrences=F("occurrences") + 1)


def alert_resolve(*, alert, by):
    if alert.resolved_at is None:
        alert.resolved_at = timezone.now()
        alert.resolved_by = by
        alert.save(update_fields=["resolved_at", "resolved_by"])
    return alert


# Line-type lookups and deactivations ---------------------------------------------------------


def facts_record_lookup(*, phone, result, now=None):
    """Save a lookup on the number's facts; a type that cannot take SMS flags it everywhere."""
    now = now or timezone.now()
    NumberFacts.objects.update_or_create(
        phone=phone,
        defaults={
            "line_type": result.line_type,
            "line_type_raw": result.raw_type[:64],
            "carrier_name": result.carrier_name[:200],
            "looked_up_at": now,
            "lookup_error": result.error[:200],
        },
    )
    if not result.is_sms_capable:
        flag_holders_of_landline(phone=phone, label=result.label)


def flag_holders_of_landline(*, phone, label):
    """Every org holding a number that cannot take SMS flags it (idempotent)."""
    reason = f"{label}; not SMS-capable"
    holders = Organization.objects.filter(contacts__phone_e164=phone).distinct()
    for org in holders:
        number_flag_automatically(
            org=org,
            phone=phone,
            code=catalogue.LOOKUP,
            reason=reason,
            cause="line-type lookup",
        )


def deactivation_apply(*, phones, list_date):
    """Opt out every listed number in every org that holds it (reason `deactivated`).

    Returns how many (org, number) opt-outs were made; numbers already opted out are left.
    """
    phones = sorted(set(phones))
    if not phones:
        return 0
    cause = f"deactivation list {list_date.isoformat()}"
    NumberFacts.objects.bulk_create(
        [NumberFacts(phone=p) for p in phones], ignore_conflicts=True, batch_size=1000
    )
    for start in range(0, len(phones), 1000):
        NumberFacts.objects.filter(phone__in=phones[start : start + 1000]).update(
            deactivated_at=list_date
        )
    holders = set()
    for start in range(0, len(phones), 1000):
        holders.update(
            Contact.objects.filter(phone_e164__in=phones[start : start + 1000]).values_list(
                "organization_id", "phone_e164"
            )
        )
    orgs = Organization.objects.in_bulk({org_id for org_id, _ in holders})
    opted_out = 0
    for org_id, phone in sorted(holders):
        org = orgs[org_id]
        state = number_state(org=org, phone=phone)
        if state.is_opted_out:
            continue
        number_opt_out(org=org, phone=phone, reason=OptOutReason.DEACTIVATED, cause=cause)
        opted_out += 1
    return opted_out
