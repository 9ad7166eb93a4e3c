"""Read-side helpers of the list pages: search, the tab names, and the kept counts.

The filters by a number's state (Active, Invalid, Opted-Out) are deliverability's
(`deliverability.queries`); this module knows contacts only.
"""

import contextlib
import re

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q

from contacts.phones import parse_phone

FILTERS = ("active", "invalid", "opted_out", "all")


def search_q(text, prefix="", region="US"):
    """Match a name, or the number in any format staff type it: national ("(212) 555-0118",
    "020 7946 0018" in a GB organization), E.164, or any run of its digits."""
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
    parsed = parse_phone(text, region)
    if parsed.is_valid:
        # A national number's trunk prefix ("0" in most countries) is not in its E.164 form.
        query |= Q(**{f"{prefix}phone_e164": parsed.e164})
    return query


COUNTS_TTL = 30  # seconds; any change of a number's state forgets them at once


def _counts_key(org_id, kind):
    return f"list-counts:{org_id}:{kind}"


def _kept(key, compute):
    """What `compute()` returns, kept for COUNTS_TTL. The cache is optional: a dead cache
    (Redis down) must not fail the page."""
    try:
        value = cache.get(key)
    except Exception:
        value = None
    if value is None:
        value = compute()
        with contextlib.suppress(Exception):
            cache.set(key, value, COUNTS_TTL)
    return value


def cached_counts(org, kind, compute):
    """The tab counts of a list, kept: counting 200k rows on every page view would make the
    pages slower as the list grows."""
    return _kept(_counts_key(org.pk, kind), compute)


def _flagged_key(org_id, filter_name):
    return f"list-flagged:{org_id}:{filter_name}"


def cached_flagged_ids(org, filter_name, compute):
    """The ids of the org's contacts in the Invalid (or Opted-Out) tab, kept like the counts."""
    return _kept(_flagged_key(org.pk, filter_name), compute)


def forget_counts(org_id):
    """A number's state (or a contact's number) changed: the tab counts of the org's lists and
    its flagged contacts are recomputed, now and again once the change is committed (a page
    computed in between would have cached what it saw before the commit)."""

    def forget():
        with contextlib.suppress(Exception):
            cache.delete_many(
                [_counts_key(org_id, kind) for kind in ("contacts", "conversations", "health")]
                + [_flagged_key(org_id, name) for name in ("invalid", "opted_out")]
            )

    forget()
    transaction.on_commit(forget)


def tabs(counts):
    """(filter, label, count) for the tab bar of a list."""
    labels = {"active": "Active", "invalid": "Invalid", "opted_out": "Opted-Out", "all": "All"}
    return [(key, labels[key], counts[key]) for key in FILTERS]
