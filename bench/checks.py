"""`checks`: the pre-send checks for 100k recipients, set-based versus one recipient at a time.

Floors: the set-based checks take at most 5 s for 100k recipients, and are at least 20 times
faster than the per-recipient loop (timed on a 5k sample and extrapolated).
"""

import time

from bench.common import BIG_ORG, BIG_SIZE, Figure, ensure_database, ensure_seeded

RECIPIENTS = 100_000
SAMPLE = 5_000


def run():
    ensure_database()
    from contacts.models import Contact
    from deliverability import checks

    org = ensure_seeded(BIG_ORG, *BIG_SIZE)
    ids = list(
        Contact.objects.filter(organization=org)
        .order_by("id")
        .values_list("id", flat=True)[:RECIPIENTS]
    )
    audience = Contact.objects.filter(organization=org, id__gte=ids[0], id__lte=ids[-1])

    set_based = []
    for _ in range(3):
        started = time.perf_counter()
        counts = checks.skip_counts(audience, org=org)
        set_based.append(time.perf_counter() - started)
    best = min(set_based)
    listed_started = time.perf_counter()
    verdicts = dict(checks.check_contacts(audience, org=org).values_list("id", "skip_reason"))
    listed = time.perf_counter() - listed_started

    sample = list(audience.order_by("id").values_list("id", "phone_e164")[:SAMPLE])
    started = time.perf_counter()
    disagree = 0
    for contact_id, phone in sample:
        if checks.check_number(org=org, phone=phone) != verdicts[contact_id]:
            disagree += 1
    loop = (time.perf_counter() - started) * len(ids) / len(sample)

    name = "checks"
    return [
        Figure(name, "recipients", len(ids), "", ""),
        Figure(name, "skipped (set-based count)", sum(counts.values()) - counts["sendable"], ""),
        Figure(name, "set-based skip counts, best of 3", best, "s", "<= 5 s", best <= 5),
        Figure(name, "set-based verdict per recipient", listed, "s", "<= 5 s", listed <= 5),
        Figure(name, "per-recipient loop (extrapolated)", loop, "s"),
        Figure(
            name, "speed-up of set-based over loop", loop / best, "x", ">= 20x", loop / best >= 20
        ),
        Figure(name, "verdicts differing on the sample", disagree, "", "0", disagree == 0),
    ]
