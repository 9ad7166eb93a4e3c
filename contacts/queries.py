"""Read-side queries of the Contacts pages: the same filters as the Conversations page.

Active means "not opted out": an invalid number is still Active (SPEC §2).
"""

import contextlib
import re

from django.core.cache import cache
from django.db.models import Q

from contacts.models import Contact
from deliverability.queries import flagged

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
    """The condition of one of FILTERS for rows whose contact is reached through `prefix`."""
    opted_out, invalid = flagged(org, f"{prefix}phone_e164")
    if filter_name == "active":
        return ~opted_out
    if filter_name == "invalid":
        return invalid
    if filter_name == "opted_out":
        return opted_out
    return Q()


COUNTS_TTL = 30  # seconds; any change of a number's state forgets them at once


def _counts_key(org_id, kind):
    return f"list-counts:{org_id}:{kind}"


def cached_counts(org, kind, compute):
    """The tab counts of a list, kept for COUNTS_TTL: counting 200k rows on every page view
    would make the pages slower as the list grows. The cache is optional."""
    key = _counts_key(org.pk, kind)
    try:
        counts = cache.get(key)
    except Exception:  # A dead cache (Redis down) must not fail the page.
        counts = None
    if counts is None:
        counts = compute()
        with contextlib.suppress(Exception):
            cache.set(key, counts, COUNTS_TTL)
    return counts


def forget_counts(org_id):
    """A number's state changed: the tab counts of the org's lists are recomputed."""
    with contextlib.suppress(Exception):
        cache.delete_many(
            [_counts_key(org_id, kind) for kind in ("contacts", "conversations", "health")]
        )


def tabs(counts):
    """(filter, label, count) for the tab bar of a list."""
    labels = {"active": "Active", "invalid": "Invalid", "opted_out": "Opted-Out", "all": "All"}
    return [(key, labels[key], counts[key]) for key in FILTERS]


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


def contact_list(org, *, filter_name="active", search=""):
    contacts = Contact.objects.for_org(org).filter(state_filter(org, filter_name))
    if search:
        contacts = contacts.filter(search_q(search))
    return contacts.order_by("last_name", "first_name", "id")
