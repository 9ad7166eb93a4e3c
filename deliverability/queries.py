"""Read-side questions about numbers, answered in the database (no per-row Python)."""

from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from contacts.models import Contact
from deliverability.models import NOT_SMS_CAPABLE, InvalidSource, NumberFacts, NumberState


def list_health(organization, now=None):
    """Counts of the org's contacts by state (SPEC §7 list health).

    Paused contacts are still subscribers: they count in `subscribed` but not in `sendable`.
    """
    now = now or timezone.now()
    state = NumberState.objects.filter(organization=organization, phone=OuterRef("phone_e164"))
    landline = NumberFacts.objects.filter(
        phone=OuterRef("phone_e164"), line_type__in=list(NOT_SMS_CAPABLE)
    )
    contacts = Contact.objects.for_org(organization).annotate(
        is_opted_out=Exists(state.exclude(opt_out_reason="")),
        is_invalid_manual=Exists(state.filter(invalid_source=InvalidSource.MANUAL)),
        is_invalid_auto=Exists(state.filter(invalid_source=InvalidSource.AUTOMATIC)),
        is_paused=Exists(state.filter(paused_until__gt=now)),
        is_landline=Exists(landline),
    )
    bad_phone = ~Q(phone_status=Contact.PhoneStatus.VALID)
    counts = contacts.aggregate(
        total=Count("id"),
        opted_out=Count("id", filter=Q(is_opted_out=True)),
        invalid_manual=Count("id", filter=Q(is_invalid_manual=True)),
        invalid_automatic=Count("id", filter=Q(is_invalid_auto=True)),
        invalid_number=Count("id", filter=bad_phone),
        landline=Count("id", filter=Q(is_landline=True)),
        paused=Count("id", filter=Q(is_paused=True, is_opted_out=False)),
        sendable=Count(
            "id",
            filter=Q(phone_status=Contact.PhoneStatus.VALID)
            & Q(is_opted_out=False, is_invalid_manual=False, is_invalid_auto=False)
            & Q(is_paused=False, is_landline=False),
        ),
    )
    counts["invalid"] = counts["invalid_manual"] + counts["invalid_automatic"]
    counts["subscribed"] = counts["total"] - counts["opted_out"]
    return counts


def states_by_phone(organization, phones):
    """{phone: NumberState} for the given phones in the org: one query for a page of rows."""
    phones = [p for p in set(phones) if p]
    if not phones:
        return {}
    rows = NumberState.objects.filter(organization=organization, phone__in=phones)
    return {state.phone: state for state in rows}


def facts_by_phone(phones):
    phones = [p for p in set(phones) if p]
    if not phones:
        return {}
    return {facts.phone: facts for facts in NumberFacts.objects.filter(phone__in=phones)}


def flagged(organization, phone_ref):
    """EXISTS expressions: the number at `phone_ref` is opted out / Invalid in the org.

    EXISTS, not IN: PostgreSQL turns NOT EXISTS into an anti-join that walks a list in its
    index order and stops at the page size; NOT IN (nullable) makes it sort the whole table.
    """
    states = NumberState.objects.filter(organization=organization, phone=OuterRef(phone_ref))
    return Exists(states.opted_out()), Exists(states.invalid())
