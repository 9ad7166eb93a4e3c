"""Periodic and background work of the deliverability engine. Thin wrappers around services."""

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException

from config.celery import enqueue
from config.pacing import wait_for_slot
from contacts.models import Contact, ContactImport, Organization
from contacts.phones import mask
from deliverability import consent, deactivations, lookup_packages
from deliverability.lookup_packages import LOOKUP_MAX_AGE
from deliverability.lookups import lookup, lookup_line_type, lookup_many
from deliverability.models import NumberFacts, NumberState

log = logging.getLogger(__name__)

REFRESH_BATCH = 500
LOOKUP_PACE_KEY = "lookups"
LOOKUP_CONCURRENCY = 8  # requests in flight at once within a batch task
PROGRESS_EVERY = 50  # an import's page counts checked numbers in steps of this many


def paced_lookup(phone):
    """One line-type lookup in its turn: never more than LOOKUP_RATE a second across every
    worker (a shared limiter, as for sends)."""
    wait_for_slot(LOOKUP_PACE_KEY, settings.LOOKUP_RATE)
    return lookup_line_type(phone)


def paced_lookup_many(requests):
    """Answer `requests` in one call (a batch request on Twilio) in its turn: a call carrying
    N numbers takes N numbers' share of LOOKUP_RATE, so the rate holds in numbers a second."""
    wait_for_slot(LOOKUP_PACE_KEY, settings.LOOKUP_RATE / len(requests))
    if len(requests) == 1:
        return [_lookup_or_error(requests[0])]
    return lookup_many(requests)


def _organization(org_id):
    return Organization.objects.filter(pk=org_id).first() if org_id else None


@shared_task(
    autoretry_for=(OSError,),  # connection errors and timeouts (requests' errors are OSErrors)
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def lookup_number(phone, force=False, org_id=None):
    """Look up one number with the packages of `org_id`'s organization that are due (a line
    type younger than 90 days is not asked again unless `force`)."""
    if not phone:
        return
    org = _organization(org_id)
    requests = lookup_packages.plan(org, [phone], force=force)
    if not requests:
        lookup_packages.known_flags_apply([phone])
        return
    try:
        wait_for_slot(LOOKUP_PACE_KEY, settings.LOOKUP_RATE)
        result = lookup(requests[0])
    except TwilioRestException as exc:  # Twilio said no (bad number, 404): record, don't retry.
        _record_refusal(org, requests[0], exc)
        return
    lookup_packages.apply(org, result)


def _record_refusal(org, request, exc):
    # Nothing is paid for a refused lookup: no NumberLookup row. A later refresh asks again.
    log.warning("lookup of %s failed: %s", mask(request.phone), exc.msg)
    NumberFacts.objects.update_or_create(
        phone=request.phone, defaults={"lookup_error": str(exc.msg)[:200]}
    )


@shared_task(acks_late=True)
def lookup_numbers(phones, import_id=None, org_id=None, force=False):
    """Look up a batch of numbers (an import's batch of rows, a refresh) with the packages of
    `org_id`'s organization that are due, LOOKUP_BATCH_SIZE numbers per request (Twilio's
    batch endpoint), a few requests at a time and at LOOKUP_RATE numbers a second. An import's
    page counts them as they finish.

    One task per batch, never one per number: an import of 100,000 rows puts some 200 tasks
    on the `lookups` queue, not 100,000 on the broker. Idempotent (a redelivered batch finds
    its numbers fresh), hence acks_late.
    """
    org = _organization(org_id)
    phones = sorted({p for p in phones if p})
    requests = lookup_packages.plan(org, phones, force=force)
    due = {request.phone for request in requests}
    lookup_packages.known_flags_apply([phone for phone in phones if phone not in due])
    _count_checked(import_id, len(phones) - len(due))
    size = max(1, settings.LOOKUP_BATCH_SIZE)
    chunks = [requests[start : start + size] for start in range(0, len(requests), size)]
    # The calls wait on Twilio, not on this process: a few threads keep LOOKUP_RATE reachable.
    # Only this thread touches the database.
    with ThreadPoolExecutor(LOOKUP_CONCURRENCY, thread_name_prefix="lookup") as pool:
        checked = 0
        for chunk, answers in zip(chunks, pool.map(_chunk_or_error, chunks), strict=True):
            if isinstance(answers, Exception):
                answers = [answers] * len(chunk)
            # One commit per request's answers, not one per number (each is a disk flush).
            with transaction.atomic():
                for request, answer in zip(chunk, answers, strict=True):
                    if isinstance(answer, TwilioRestException):
                        _record_refusal(org, request, answer)
                    elif isinstance(answer, Exception):
                        # Twilio unreachable: left for refresh_stale_lookups, which retries it.
                        log.warning("lookup of %s failed: %s", mask(request.phone), answer)
                    else:
                        lookup_packages.apply(org, answer)
            for _ in chunk:
                checked += 1
                if checked % PROGRESS_EVERY == 0:
                    _count_checked(import_id, PROGRESS_EVERY)
        _count_checked(import_id, checked % PROGRESS_EVERY)
    return len(requests)


def _chunk_or_error(chunk):
    try:
        return paced_lookup_many(chunk)
    except (TwilioRestException, OSError) as exc:
        return exc


def _lookup_or_error(request):
    try:
        return lookup(request)
    except (TwilioRestException, OSError) as exc:
        return exc


def _count_checked(import_id, count):
    if import_id and count:
        ContactImport.objects.filter(pk=import_id).update(lookups_done=F("lookups_done") + count)


@shared_task
def refresh_stale_lookups(batch=REFRESH_BATCH):
    """Re-look up numbers of contacts never looked up or looked up more than 90 days ago, per
    organization (each with its own packages)."""
    stale_before = timezone.now() - LOOKUP_MAX_AGE
    known_fresh = NumberFacts.objects.filter(looked_up_at__gt=stale_before).values("phone")
    pairs = (
        Contact.objects.with_valid_phone()
        .exclude(phone_e164__in=known_fresh)
        .values_list("organization_id", "phone_e164")
        .distinct()[:batch]
    )
    by_org = defaultdict(list)
    for org_id, phone in pairs:
        by_org[org_id].append(phone)
    for org_id, phones in sorted(by_org.items()):
        enqueue("deliverability.tasks.lookup_numbers", phones, org_id=org_id)
    return sum(len(phones) for phones in by_org.values())


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
