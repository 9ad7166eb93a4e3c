"""Read-side queries of the Contacts pages: the same filters as the Conversations page.

Active means "not opted out": an invalid number is still Active (SPEC §2).
"""

import re

from django.db.models import Count, Q

from contacts.models import Contact
from deliverability.queries import flagged_phones

FILTERS = ("active", "invalid", "opted_out", "all")


def search_q(text, prefix=""):
    """Match a name, or any part of the number as typed (digits compare as digits)."""
    text = (text or "").strip()
    if not text:
        return Q()
    query = Q()
    for word in text.split():
        query &= Q(**{f"{prefix}first_name__icontains": word}) | Q(
            **{f"{prefix}last_name__icontains": word}
        )
    digits = re.sub(r"\D", "", text)
    if len(digits) >= 3:
        query |= Q(**{f"{prefix}phone_e164__contains": digits})
    query |= Q(**{f"{prefix}phone_raw__icontains": text})
    return query


def state_filter(org, filter_name, prefix=""):
    """The Q of one of FILTERS for rows whose contact is reached through `prefix`."""
    opted_out, invalid = flagged_phones(org)
    field = f"{prefix}phone_e164__in"
    if filter_name == "active":
        return ~Q(**{field: opted_out})
    if filter_name == "invalid":
        return Q(**{field: invalid})
    if filter_name == "opted_out":
        return Q(**{field: opted_out})
    return Q()


def filter_counts(queryset, org, prefix=""):
    """Counts for the Active / Invalid / Opted-Out / All tabs, in one query."""
    opted_out, invalid = flagged_phones(org)
    counts = queryset.aggregate(
        all=Count("id"),
        opted_out=Count("id", filter=Q(**{f"{prefix}phone_e164__in": opted_out})),
        invalid=Count("id", filter=Q(**{f"{prefix}phone_e164__in": invalid})),
    )
    counts["active"] = counts["all"] - counts["opted_out"]
    return counts


def contact_list(org, *, filter_name="active", search=""):
    contacts = Contact.objects.for_org(org).filter(state_filter(org, filter_name))
    if search:
        contacts = contacts.filter(search_q(search))
    return contacts.order_by("last_name", "first_name", "id")
