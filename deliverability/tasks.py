"""Periodic and background work of the deliverability engine. Thin wrappers around services."""

import logging
from datetime import date, timedelta

from celery import shared_task
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException

from contacts.models import Contact
from contacts.phones import mask
from deliverability import consent, deactivations, services
from deliverability.lookups import lookup_line_type
from deliverability.models import NumberFacts

log = logging.getLogger(__name__)

LOOKUP_MAX_AGE = timedelta(days=90)
REFRESH_BATCH = 500


def _is_fresh(phone, now):
    facts = NumberFacts.objects.filter(phone=phone).only("looked_up_at").first()
    return bool(facts and facts.looked_up_at and facts.looked_up_at > now - LOOKUP_MAX_AGE)


@shared_task(
    autoretry_for=(OSError,),  # connection errors and timeouts (requests' errors are OSErrors)
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def lookup_number(phone, force=False):
    """Look up one number's line type unless a lookup younger than 90 days exists."""
    if not phone:
        return
    if not force and _is_fresh(phone, timezone.now()):
        # Known already; a contact added since in another org still gets the flag.
        facts = NumberFacts.objects.get(phone=phone)
        if not facts.is_sms_capable:
            services.flag_holders_of_landline(phone=phone, label=facts.get_line_type_display())
        return
    try:
        result = lookup_line_type(phone)
    except TwilioRestException as exc:  # Twilio said no (bad number, 404): record, don't retry.
        log.warning("lookup of %s failed: %s", mask(phone), exc.msg)
        NumberFacts.objects.update_or_create(
            phone=phone, defaults={"lookup_error": str(exc.msg)[:200]}
        )
        return
    services.facts_record_lookup(phone=phone, result=result)


@shared_task
def lookup_numbers(phones):
    """Look up a batch of numbers (an import): only those without a fresh lookup."""
    now = timezone.now()
    phones = sorted({p for p in phones if p})
    fresh = set(
        NumberFacts.objects.filter(
            phone__in=phones, looked_up_at__gt=now - LOOKUP_MAX_AGE
        ).values_list("phone", flat=True)
    )
    for phone in phones:
        if phone not in fresh:
            lookup_number.delay(phone)


@shared_task
def refresh_stale_lookups(batch=REFRESH_BATCH):
    """Re-look up numbers of contacts never looked up or looked up more than 90 days ago."""
    stale_before = timezone.now() - LOOKUP_MAX_AGE
    known_fresh = NumberFacts.objects.filter(looked_up_at__gt=stale_before).values("phone")
    phones = (
        Contact.objects.with_valid_phone()
        .exclude(phone_e164__in=known_fresh)
        .values_list("phone_e164", flat=True)
        .distinct()[:batch]
    )
    phones = list(phones)
    for phone in phones:
        lookup_number.delay(phone)
    return len(phones)


@shared_task
def end_expired_pauses():
    return services.pauses_end_expired()


@shared_task
def apply_review_deadlines():
    """Opt out possible opt-outs undecided at their deadline; keep the review alert current."""
    return consent.review_deadlines_apply()


@shared_task(autoretry_for=(OSError,), retry_backoff=60, retry_jitter=True, max_retries=6)
def import_deactivations_for(day):
    """Import the deactivation list of `day` (YYYY-MM-DD)."""
    result = deactivations.import_deactivations(date.fromisoformat(day))
    return {"listed": result.listed, "opted_out": result.opted_out}


@shared_task
def import_deactivations_daily():
    """Yesterday's list (carriers publish a day's deactivations the day after)."""
    yesterday = timezone.now().date() - timedelta(days=1)
    import_deactivations_for.delay(yesterday.isoformat())
