"""Carrier deactivation lists (SPEC §6): Twilio's Messaging Deactivations API.

`GET /v1/Deactivations?Date=YYYY-MM-DD` answers 307 with `redirect_to`, a short-lived URL of a
text file listing the US numbers carriers deactivated that day. Every listed number is opted out
with reason `deactivated` in each org that holds it. A day is imported once: running it again
for the same date changes nothing.
"""

import logging
import re
from dataclasses import dataclass

import requests
from django.conf import settings
from django.db import IntegrityError, transaction

from contacts.models import Contact
from deliverability import services
from deliverability.models import DeactivationImport
from deliverability.number_plan import plan_for
from deliverability.twilio_client import twilio_client

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 30
# A US number: ten digits (area code and exchange do not start with 0 or 1), maybe after 1 or +1.
_US_NUMBER = re.compile(r"^(?:\+?1)?([2-9]\d{2}[2-9]\d{6})$")


@dataclass(frozen=True)
class ImportResult:
    date: object
    listed: int
    opted_out: int
    already_imported: bool


def parse_list(text):
    """E.164 numbers from a deactivation file: one number a line, with or without +1."""
    numbers = []
    for line in text.splitlines():
        digits = re.sub(r"[^\d+]", "", line.split(",")[0])
        match = _US_NUMBER.match(digits)
        if match:
            numbers.append(f"+1{match.group(1)}")
    return numbers


def fetch_list(list_date):
    """The numbers deactivated on `list_date`, from Twilio or the simulator."""
    if settings.SMS_BACKEND != "twilio":
        # The simulator lists every known number of its deactivated range, every day.
        phones = Contact.objects.exclude(phone_e164="").values_list("phone_e164", flat=True)
        return sorted({p for p in phones.distinct() if plan_for(p).deactivated})
    answer = twilio_client().messaging.v1.deactivations().fetch(date=list_date)
    if not answer.redirect_to:
        raise ValueError(f"Twilio gave no deactivation list for {list_date}")
    return parse_list(download(answer.redirect_to))


def download(url):
    """The text of the list file behind Twilio's short-lived `redirect_to` URL.

    A failed download raises (requests' errors are OSErrors: the task retries it).
    """
    response = requests.get(url, timeout=DOWNLOAD_TIMEOUT)
    response.raise_for_status()
    return response.text


def import_deactivations(list_date):
    """Import one day's list once; a second run for the same date changes nothing."""
    done = DeactivationImport.objects.filter(date=list_date).first()
    if done:
        return ImportResult(list_date, done.numbers_listed, 0, already_imported=True)
    phones = fetch_list(list_date)
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = DeactivationImport.objects.create(
                    date=list_date, numbers_listed=len(phones)
                )
        except IntegrityError:  # Another worker is importing the same day.
            return ImportResult(list_date, len(phones), 0, already_imported=True)
        opted_out = services.deactivation_apply(phones=phones, list_date=list_date)
        record.numbers_opted_out = opted_out
        record.save(update_fields=["numbers_opted_out"])
    log.info("deactivations %s: %d listed, %d opted out", list_date, len(phones), opted_out)
    return ImportResult(list_date, len(phones), opted_out, already_imported=False)
