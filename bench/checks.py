"""`checks`: the pre-send checks for 100k recipients, set-based versus one recipient at a time.

Floors: the set-based checks take at most 5 s for 100k recipients, and are at least 20 times
faster than the per-recipient loop (timed on a 5k sample and extrapolated). The two must give
every recipient of the sample the same verdict (but duplicate_number, which only the set sees).
"""

import time
from collections import Counter

from bench.common import BIG_ORG, BIG_SIZE, Figure, ensure_database, ensure_seeded

RECIPIENTS = 100_000
SAMPLE = 5_000
REPEAT = 3
# `manage.py seed` makes opt-outs, Invalid flags, landline facts, pauses and error streaks but
# no number with errors in several orgs: one recipient in GLOBAL_ERRORS_EVERY gets them, so that
# every rule on a recipient's number is exercised. A prime, so that it does not line up with
# the sample's stride.
GLOBAL_ERRORS_EVERY = 397


def _best_of(function, repeat=REPEAT):
    durations, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        durations.append(time.perf_counter() - started)
    return min(durations), result


def _ensure_global_errors(phones):
    """Errors across orgs for every GLOBAL_ERRORS_EVERY-th number, and for no other (idempotent)."""
    from deliverability.models import GLOBAL_ERRORS_THRESHOLD, NumberFacts

    chosen = phones[::GLOBAL_ERRORS_EVERY]
    NumberFacts.objects.bulk_create(
        [NumberFacts(phone=phone) for phone in chosen], ignore_conflicts=True
    )
    NumberFacts.objects.filter(errors_since_heartbeat__gt=GLOBAL_ERRORS_THRESHOLD).exclude(
        phone__in=chosen
    ).update(errors_since_heartbeat=0)
    NumberFacts.objects.filter(phone__in=chosen).update(
        errors_since_heartbeat=GLOBAL_ERRORS_THRESHOLD + 1
    )


def run():
    ensure_database()
    from contacts.models import Contact
    from deliverability import eligibility

    org = ensure_seeded(BIG_ORG, *BIG_SIZE)
    recipients = list(
        Contact.objects.filter(organization=org)
        .order_by("id")
        .values_list("id", "phone_e164")[:RECIPIENTS]
    )
    _ensure_global_errors([phone for _, phone in recipients])
    first, last = recipients[0][0], recipients[-1][0]
    audience = Contact.objects.filter(organization=org, id__gte=first, id__lte=last)

    counts_s, counts = _best_of(lambda: eligibility.skip_counts(audience, org=org))
    listed_s, verdicts = _best_of(
        lambda: list(eligibility.check_contacts(audience, org=org).values_list("id", "skip_reason"))
    )
    verdicts = dict(verdicts)

    # An even spread over the audience, so the sample holds numbers in every state.
    sample = recipients[:: len(recipients) // SAMPLE][:SAMPLE]
    started = time.perf_counter()
    one_by_one = {cid: eligibility.check_number(org=org, phone=phone) for cid, phone in sample}
    loop_s = (time.perf_counter() - started) * len(recipients) / len(sample)
    # A duplicate number is a verdict about the whole audience, which a check of one recipient
    # cannot give: those recipients are compared with the verdict their number had without it.
    disagree = sum(
        1
        for cid, verdict in one_by_one.items()
        if verdict != verdicts[cid]
        and not (verdict is None and verdicts[cid] == "duplicate_number")
    )
    covered = Counter(verdict for verdict in one_by_one.values() if verdict)
    print(
        f"checks: sample of {len(sample)}, skip reasons in it: "
        + ", ".join(f"{reason} {n}" for reason, n in sorted(covered.items())),
        flush=True,
    )

    speedup = loop_s / counts_s
    name = "checks"
    return [
        Figure(name, "recipients", len(recipients), ""),
        Figure(name, "skipped (set-based count)", sum(counts.values()) - counts["sendable"], ""),
        Figure(name, "set-based skip counts, best of 3", counts_s, "s", "<= 5 s", counts_s <= 5),
        Figure(
            name,
            "set-based verdict per recipient, best of 3",
            listed_s,
            "s",
            "<= 5 s",
            listed_s <= 5,
        ),
        Figure(name, "per-recipient loop (extrapolated)", loop_s, "s"),
        Figure(name, "speed-up of set-based over loop", speedup, "x", ">= 20x", speedup >= 20),
        Figure(name, "verdicts differing on the sample", disagree, "", "0", disagree == 0),
    ]
