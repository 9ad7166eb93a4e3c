"""Read-side questions about numbers, answered in the database (no per-row Python)."""

from django.db.models import Exists, OuterRef
from django.utils import timezone

from contacts.models import Contact
from deliverability import eligibility
from deliverability.models import NOT_SMS_CAPABLE, InvalidSource, NumberFacts, NumberState


def list_health(organization, now=None):
    """Counts of the org's contacts by state (SPEC §7 list health).

    Paused contacts are still subscribers: they count in `subscribed` but not in `sendable`.
    `sendable` is what a broadcast to every contact would send: the pre-send checks of the
    broadcast preview, so the two never disagree (a second contact on a number included).
    Each count starts from the few flagged numbers and reaches the contacts through the
    (organization, phone) index, so the cost follows the flagged numbers, not the list.
    """
    now = now or timezone.now()
    contacts = Contact.objects.for_org(organization)
    states = NumberState.objects.for_org(organization)
    landlines = NumberFacts.objects.filter(line_type__in=list(NOT_SMS_CAPABLE))
    paused = states.filter(paused_until__gt=now, opt_out_reason="")

    def holding(numbers):
        return contacts.filter(phone_e164__in=numbers.values("phone")).count()

    counts = {
        "total": contacts.count(),
        "opted_out": holding(states.opted_out()),
        "invalid_manual": holding(states.filter(invalid_source=InvalidSource.MANUAL)),
        "invalid_automatic": holding(states.filter(invalid_source=InvalidSource.AUTOMATIC)),
        "invalid_number": contacts.exclude(phone_status=Contact.PhoneStatus.VALID).count(),
        "landline": holding(landlines),
        "paused": holding(paused),
    }
    counts["sendable"] = eligibility.skip_counts(contacts, org=organization, now=now)["sendable"]
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


def flagged(organization, phone_ref):
    """EXISTS expressions: the number at `phone_ref` is opted out / Invalid in the org.

    EXISTS, not IN: PostgreSQL turns NOT EXISTS into an anti-join that walks a list in its
    index order and stops at the page size; NOT IN (nullable) makes it sort the whole table.
    """
    states = NumberState.objects.filter(organization=organization, phone=OuterRef(phone_ref))
    return Exists(states.opted_out()), Exists(states.invalid())
