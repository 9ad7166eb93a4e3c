"""Work on numbers that spans models or calls Twilio (SPEC §2, §4, §6).

A change to one number's state in one org is a method of NumberState (deliverability/models.py),
locked and audited there; the error history and a Twilio error's effect are in
deliverability/outcomes.py. Here: a re-check (a Twilio lookup), a contact's new number, lookups
and deactivation lists that reach every org holding a number, and org alerts.
"""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config.celery import enqueue_on_commit
from contacts.models import Contact, Organization
from contacts.queries import forget_counts
from deliverability import catalogue
from deliverability.models import (
    AuditEvent,
    NumberFacts,
    NumberState,
    OptOutReason,
    OrgAlert,
    StateChangeRefused,
)


def number_recheck(*, org, phone, by, lookup, note="", source_page="", contact=None):
    """A fresh lookup; clears an automatic flag only when it disproves it (an SMS-capable line
    type; for a disconnected number, a carrier line status that is active again).

    `lookup(phone)` returns a deliverability.lookups.LookupResult (the caller picks the
    backend). Returns (state, result). The lookup runs outside the transaction: it calls Twilio.
    """
    if not phone:
        raise StateChangeRefused("This contact has no valid phone number.")
    state = NumberState.objects.of(org=org, phone=phone)
    if not state.may_recheck:
        raise StateChangeRefused(
            "Re-check applies only to numbers flagged as landline, unreachable or disconnected. "
            "Update the phone number in the member's profile instead."
        )
    result = lookup(phone)
    facts_record_lookup(phone=phone, result=result)
    state.recheck(result=result, by=by, note=note, source_page=source_page, contact=contact)
    return state, result


@transaction.atomic
def contact_change_phone(*, contact, raw, by, note="", source_page=""):
    """The contact takes a new number with whatever state it has in the org (usually none).

    The old number keeps its state (a flag belongs to the number, not the person); the
    conversation stays with the contact.
    """
    old_raw, old_e164 = contact.phone_raw, contact.phone_e164
    parsed = contact.set_phone(raw)
    fields = ["phone_raw", "phone_e164", "phone_status", "phone_error"]
    if parsed.e164 != old_e164:
        # Consent is given for a number: the new one's dates from today (SPEC §2).
        contact.consent_date, contact.consent_date_estimated = timezone.localdate(), False
        fields += ["consent_date", "consent_date_estimated"]
    contact.save(update_fields=fields)
    forget_counts(contact.organization_id)  # the contact may now be in another tab
    AuditEvent.phone_changed(
        contact, old_raw=old_raw, old_e164=old_e164, by=by, note=note, source_page=source_page
    ).save()
    if parsed.is_valid and parsed.e164 != old_e164:
        enqueue_on_commit(
            "deliverability.tasks.lookup_number", parsed.e164, org_id=contact.organization_id
        )
    return parsed


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


# Line-type lookups and deactivations ---------------------------------------------------------


def facts_record_lookup(*, phone, result, now=None):
    """Save a lookup on the number's facts: its line type when it was asked, its carrier line
    status when it was answered. A type that cannot take SMS, or a line the carrier reports
    disconnected, flags the number in every org that holds it; `unreachable` is only a fact."""
    now = now or timezone.now()
    defaults = {"lookup_error": result.error[:200]}
    if result.line_type:
        defaults |= {
            "line_type": result.line_type,
            "line_type_raw": result.raw_type[:64],
            "carrier_name": result.carrier_name[:200],
            "looked_up_at": now,
        }
    if result.line_status:
        defaults |= {"line_status": result.line_status, "line_status_at": now}
    NumberFacts.objects.update_or_create(phone=phone, defaults=defaults)
    if not result.is_sms_capable:
        flag_holders_of_landline(phone=phone, label=result.label)
    if result.is_disconnected:
        flag_holders_of_disconnected(phone=phone)


def flag_holders_of_landline(*, phone, label):
    """Every org holding a number that cannot take SMS flags it (idempotent)."""
    reason = f"{label}; not SMS-capable"
    for org in Organization.objects.filter(contacts__phone_e164=phone).distinct():
        NumberState.objects.of(org=org, phone=phone).flag_automatically(
            code=catalogue.LOOKUP, reason=reason, cause="line-type lookup"
        )


def flag_holders_of_disconnected(*, phone):
    """Every org holding a number its carrier reports disconnected flags it (idempotent)."""
    for org in Organization.objects.filter(contacts__phone_e164=phone).distinct():
        NumberState.objects.of(org=org, phone=phone).flag_automatically(
            code=catalogue.LINE_STATUS,
            reason=catalogue.DISCONNECTED_REASON,
            cause="carrier line status",
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
        state = NumberState.objects.of(org=orgs[org_id], phone=phone)
        if state.is_opted_out:
            continue
        state.opt_out(reason=OptOutReason.DEACTIVATED, cause=cause)
        opted_out += 1
    return opted_out
