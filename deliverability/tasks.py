"""Periodic and background work of the deliverability engine. Thin wrappers around services."""

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException

from config.celery import enqueue
from config.pacing import wait_for_slot
from contacts.models import Contact, ContactImport
from contacts.phones import mask
from deliverability import consent, deactivations, services
from deliverability.lookups import lookup_line_type
from deliverability.models import NumberFacts, NumberState

log = logging.getLogger(__name__)

LOOKUP_MAX_AGE = timedelta(days=90)
REFRESH_BATCH = 500
LOOKUP_PACE_KEY = "lookups"
LOOKUP_CONCURRENCY = 8  # calls in flight at once within a batch
PROGRESS_EVERY = 50  # an import's page counts checked numbers in steps of this many


def _is_fresh(phone, now):
    facts = NumberFacts.objects.filter(phone=phone).only("looked_up_at").first()
    return bool(facts and facts.looked_up_at and facts.looked_up_at > now - LOOKUP_MAX_AGE)


def paced_lookup(phone):
    """One line-type lookup in its turn: never more than LOOKUP_RATE a second across every
    worker (a shared limiter, as for sends)."""
    wait_for_slot(LOOKUP_PACE_KEY, settings.LOOKUP_RATE)
    return lookup_line_type(phone)


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
        _flag_if_known_landline(phone)
        return
    try:
        result = paced_lookup(phone)
    except TwilioRestException as exc:  # Twilio said no (bad number, 404): record, don't retry.
        _record_refusal(phone, exc)
        return
    services.facts_record_lookup(phone=phone, result=result)


def _flag_if_known_landline(phone):
    # Known already; a contact added since in another org still gets the flag.
    facts = NumberFacts.objects.get(phone=phone)
    if not facts.is_sms_capable:
        services.flag_holders_of_landline(phone=phone, label=facts.get_line_type_display())


def _record_refusal(phone, exc):
    log.warning("lookup of %s failed: %s", mask(phone), exc.msg)
    NumberFacts.objects.update_or_create(phone=phone, defaults={"lookup_error": str(exc.msg)[:200]})


@shared_task(acks_late=True)
def lookup_numbers(phones, import_id=None):
    """Look up a batch of numbers (an import's batch of rows, a refresh): those without a fresh
    lookup, a few at a time and at LOOKUP_RATE. An import's page counts them as they finish.

    One task per batch, never one per number: an import of 100,000 rows puts some 200 tasks
    on the `lookups` queue, not 100,000 on the broker. Idempotent (a redelivered batch finds
    its numbers fresh), hence acks_late.
    """
    now = timezone.now()
    phones = sorted({p for p in phones if p})
    fresh = set(
        NumberFacts.objects.filter(
            phone__in=phones, looked_up_at__gt=now - LOOKUP_MAX_AGE
        ).values_list("phone", flat=True)
    )
    for phone in fresh:
        _flag_if_known_landline(phone)
    _count_checked(import_id, len(fresh))
    due = [phone for phone in phones if phone not in fresh]
    # The calls wait on Twilio, not on this process: a few threads keep LOOKUP_RATE reachable.
    # Only this thread touches the database.
    with ThreadPoolExecutor(LOOKUP_CONCURRENCY, thread_name_prefix="lookup") as pool:
        answers = pool.map(_lookup_or_error, due)
        checked = 0
        for phone, answer in zip(due, answers, strict=True):
            if isinstance(answer, TwilioRestException):
                _record_refusal(phone, answer)
            elif isinstance(answer, Exception):
                # Twilio unreachable: left for refresh_stale_lookups, which retries it.
                log.warning("lookup of %s failed: %s", mask(phone), answer)
            else:
                services.facts_record_lookup(phone=phone, result=answer)
            checked += 1
            if checked % PROGRESS_EVERY == 0:
                _count_checked(import_id, PROGRESS_EVERY)
        _count_checked(import_id, checked % PROGRESS_EVERY)
    return len(due)


def _lookup_or_error(phone):
    try:
        return paced_lookup(phone)
    except (TwilioRestException, OSError) as exc:
        return exc


def _count_checked(import_id, count):
    if import_id and count:
        ContactImport.objects.filter(pk=import_id).update(lookups_done=F("lookups_done") + count)


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
    if phones:
        enqueue("deliverability.tasks.lookup_numbers", phones)
    return len(phones)


@shared_task
def end_expired_pauses():
    return NumberState.objects.end_expired_pauses()


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
    enqueue("deliverability.tasks.import_deactivations_for", yesterday.isoformat())
