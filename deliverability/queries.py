"""Read-side questions about numbers, answered in the database (no per-row Python).

The list pages' tabs filter contacts by their number's state here: Active means "not opted out",
an invalid number is still Active (SPEC §2).
"""

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from contacts.models import Contact
from contacts.queries import cached_flagged_ids, search_q
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


def state_filter(org, filter_name, prefix=""):
    """The condition of one of FILTERS for rows whose contact is reached through `prefix`."""
    opted_out, invalid = flagged(org, f"{prefix}phone_e164")
    if filter_name == "active":
        return ~opted_out
    if filter_name == "invalid":
        return invalid
    if filter_name == "opted_out":
        return opted_out
    return Q()


def flagged_contact_ids(org, filter_name):
    """Ids of the org's contacts whose number is Invalid (or opted out), kept like the counts.

    Flagged numbers are a few per cent of a list: finding their contacts means one index probe
    per flagged number, too slow to repeat on every page view of a 200k-contact list.
    """

    def compute():
        states = NumberState.objects.for_org(org)
        states = states.invalid() if filter_name == "invalid" else states.opted_out()
        contacts = Contact.objects.for_org(org).filter(phone_e164__in=states.values("phone"))
        return list(contacts.values_list("id", flat=True))

    return cached_flagged_ids(org, filter_name, compute)


def filter_counts(queryset, org, prefix=""):
    """Counts for the Active / Invalid / Opted-Out / All tabs.

    Three small queries rather than one pass with FILTER clauses: the flagged numbers are few,
    so their counts are driven by the (org, phone) index, and the total is an index-only count.
    """
    opted_out, invalid = flagged(org, f"{prefix}phone_e164")
    counts = {
        "all": queryset.count(),
        "opted_out": queryset.filter(opted_out).count(),
        "invalid": queryset.filter(invalid).count(),
    }
    counts["active"] = counts["all"] - counts["opted_out"]
    return counts


def contacts_in_tab(org, *, filter_name="active", search=""):
    """The org's contacts in one of the tabs (contacts.queries.FILTERS), matching `search`."""
    contacts = Contact.objects.for_org(org).filter(state_filter(org, filter_name))
    if search:
        contacts = contacts.filter(search_q(search, region=org.default_region))
    return contacts.order_by("last_name", "first_name", "id")
