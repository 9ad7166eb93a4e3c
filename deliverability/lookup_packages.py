"""What an organization's lookups ask for, and what their answers do (SPEC §2).

An organization pays for Lookup packages (`LookupPackages`, edited in the admin): line type
(on unless turned off), line status (beta) and the reassigned-number check (US numbers only),
both off unless turned on. For a batch of its numbers `plan` makes one LookupRequest per
number with the packages that are due: a line type or line status younger than 90 days is
known already (they are global facts, whichever org paid for them); a reassigned check is due
once per consent date (it is about this org's consent, never a global fact). `apply` records
each answer: the facts, the flags and opt-outs that follow, and a `NumberLookup` row saying
which packages were paid for.
"""

from datetime import timedelta

from django.db.models import Max
from django.utils import timezone

from config.celery import enqueue_on_commit
from contacts.models import Contact
from deliverability import services
from deliverability.catalogue import LINE_STATUS
from deliverability.lookups import LookupRequest, LookupResult, is_us_number, lookup
from deliverability.models import (
    LookupPackages,
    NumberFacts,
    NumberLookup,
    NumberState,
    OptOutReason,
    Reassigned,
)

LOOKUP_MAX_AGE = timedelta(days=90)
LOOKUP_BATCH = 500  # numbers per lookup task, as an import's batch of rows
REASSIGNED_CAUSE = "reassigned-number lookup"
REASSIGNED_NOTE = "This number has changed owners since consent was given."


def consent_dates(org, phones):
    """{phone: consent date} for `org`: the latest among its contacts on the number (a newer
    contact on a number is its current owner, who gave consent then)."""
    rows = (
        Contact.objects.filter(organization=org, phone_e164__in=phones)
        .values("phone_e164")
        .annotate(latest=Max("consent_date"))
    )
    return {row["phone_e164"]: row["latest"] for row in rows}


def plan(org, phones, *, force=False, now=None):
    """One LookupRequest per number of `phones` that has a package due, for `org`.

    `org` None is a lookup nobody's packages apply to: the line type only. `force` asks the
    line type and line status again even when they are fresh (Re-check, a failed send).
    """
    now = now or timezone.now()
    phones = sorted({p for p in phones if p})
    packages = LookupPackages.for_org(org) if org is not None else LookupPackages()
    facts = {
        f.phone: f
        for f in NumberFacts.objects.filter(phone__in=phones).only(
            "phone", "looked_up_at", "line_status_at"
        )
    }
    consent = consent_dates(org, phones) if org is not None and packages.reassigned else {}
    checked = set()
    if consent:
        checked = set(
            NumberLookup.objects.filter(
                organization=org, phone__in=list(consent), paid_reassigned=True
            )
            .exclude(reassigned="")
            .values_list("phone", "last_verified_date")
        )
    stale_before = now - LOOKUP_MAX_AGE
    requests = []
    for phone in phones:
        known = facts.get(phone)
        line_type = packages.line_type and (
            force or not (known and known.looked_up_at and known.looked_up_at > stale_before)
        )
        line_status = packages.line_status and (
            force or not (known and known.line_status_at and known.line_status_at > stale_before)
        )
        last_verified = None
        if phone in consent and is_us_number(phone) and (phone, consent[phone]) not in checked:
            last_verified = consent[phone]
        if line_type or line_status or last_verified:
            requests.append(LookupRequest(phone, line_type, line_status, last_verified))
    return requests


def apply(org, result, *, now=None):
    """Record one answer: the number's facts (and the flags they raise everywhere), this org's
    opt-out of a reassigned number, and what was paid for."""
    now = now or timezone.now()
    request = result.request
    services.facts_record_lookup(phone=request.phone, result=result, now=now)
    if org is not None and result.reassigned == Reassigned.YES:
        NumberState.objects.of(org=org, phone=request.phone).opt_out(
            reason=OptOutReason.REASSIGNED, cause=REASSIGNED_CAUSE, note=REASSIGNED_NOTE
        )
    return record(org, request, result, now=now)


def record(org, request, result=None, *, now=None, error=""):
    """The NumberLookup row of one request: which packages were paid for, what they said."""
    result = result or LookupResult(line_type="")
    return NumberLookup.objects.create(
        organization=org,
        phone=request.phone,
        looked_up_at=now or timezone.now(),
        paid_line_type=request.line_type,
        paid_line_status=request.line_status,
        paid_reassigned=request.reassigned,
        line_type=result.line_type,
        line_status=result.line_status,
        reassigned=result.reassigned,
        last_verified_date=request.last_verified,
        error=(error or result.error)[:200],
    )


def turned_on(before, after):
    """Whether a change of packages (dicts of LOOKUP_PACKAGE_NAMES) turned any of them on."""
    return any(after[name] and not before[name] for name in after)


def lookup_org_numbers(org):
    """Look up every number of the org with its packages (what became due), one task per
    LOOKUP_BATCH numbers, once the transaction commits. Returns how many numbers."""
    phones = list(
        Contact.objects.for_org(org)
        .with_valid_phone()
        .order_by("phone_e164")
        .values_list("phone_e164", flat=True)
        .distinct()
    )
    for start in range(0, len(phones), LOOKUP_BATCH):
        enqueue_on_commit(
            "deliverability.tasks.lookup_numbers",
            phones[start : start + LOOKUP_BATCH],
            org_id=org.pk,
        )
    return len(phones)


def recheck_lookup(org, state):
    """The lookup "Re-check number" makes for `state`: the line type, and the line status too
    when the org pays for it or the flag came from it. Recorded like any other lookup."""
    packages = LookupPackages.for_org(org)
    with_status = packages.line_status or state.invalid_code == LINE_STATUS

    def run(phone):
        request = LookupRequest(phone, line_type=True, line_status=with_status)
        result = lookup(request)
        record(org, request, result)
        return result

    return run


def known_flags_apply(phones):
    """Numbers already known (fresh facts) to be landlines or disconnected: a contact added
    since in another org gets the flag too, without a new lookup."""
    known = NumberFacts.objects.filter(phone__in=phones).only("phone", "line_type", "line_status")
    for facts in known:
        if not facts.is_sms_capable:
            services.flag_holders_of_landline(
                phone=facts.phone, label=facts.get_line_type_display()
            )
        if facts.line_status == "inactive":
            services.flag_holders_of_disconnected(phone=facts.phone)
