"""What a send's outcome tells about a number (SPEC §4, §5): the error history the error rules
read, heartbeats, and the catalogue's effect of a Twilio error code.

Each function that changes both a number's state in an org and its global facts locks them in
the documented order (conversations/events.py): the NumberState, then the NumberFacts.
"""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.celery import enqueue_on_commit
from deliverability import catalogue
from deliverability.catalogue import Effect
from deliverability.models import NumberFacts, NumberState, OptOutReason, OrgAlert
from deliverability.services import alert_raise


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
    state, facts = NumberState.objects.with_facts(org=org, phone=phone)
    state.record_error(at)
    state.save()
    facts.record_error(at, code)
    facts.save()


@transaction.atomic
def record_success(*, org, phone, at, delivered):
    """A sent (final) or delivered outcome of a send attempted at `at` ends the org's streak.

    A delivery is also a heartbeat: the global error count starts again.
    """
    state = NumberState.objects.locked(org=org, phone=phone)
    if state.record_success(at):
        state.save()
    if delivered:
        record_heartbeat(phone=phone, at=at)


@transaction.atomic
def record_heartbeat(*, phone, at):
    """A sign of life from the number (a delivery, an inbound reply, a click)."""
    facts = NumberFacts.objects.locked(phone=phone)
    if facts.record_heartbeat(at):
        facts.save(update_fields=["last_heartbeat_at", "errors_since_heartbeat", "updated_at"])


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
        NumberState.objects.of(org=org, phone=phone).flag_automatically(
            code=info.code, reason=info.reason, cause=cause
        )
    elif info.effect == Effect.CARRIER_STOP and phone:
        NumberState.objects.of(org=org, phone=phone).opt_out(
            reason=OptOutReason.CARRIER_STOP, cause=cause
        )
    elif info.effect == Effect.COUNT_ERROR and phone:
        record_number_error(org=org, phone=phone, at=at, code=info.code or code)
        if info.code == 30006:
            enqueue_on_commit("deliverability.tasks.lookup_number", phone, True, org_id=org.pk)
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
