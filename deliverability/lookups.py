"""Twilio Lookup v2 (line type, line status, reassigned number), or the simulator's plan.

What is asked for a number is a LookupRequest: the packages the organization pays for that are
due (SPEC §2) and, for the reassigned-number check, the consent date sent as
LastVerifiedDate. `lookup_many` answers many requests at once: on the twilio backend through
the batch endpoint (`POST /v2/batch/query`, LOOKUP_BATCH_SIZE numbers a request), and a batch
request Twilio refuses as a whole falls back to one request per number.
"""

import logging
from dataclasses import dataclass, field
from datetime import date

import phonenumbers
from django.conf import settings
from twilio.base.exceptions import TwilioRestException

from contacts.phones import mask
from deliverability.models import NOT_SMS_CAPABLE, LineStatus, LineType, Reassigned
from deliverability.number_plan import plan_for, reassigned_since
from deliverability.twilio_client import twilio_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LookupRequest:
    """One number and the packages asked for it."""

    phone: str
    line_type: bool = True
    line_status: bool = False
    # The consent date; set only when the reassigned-number check is asked for.
    last_verified: date | None = None

    @property
    def reassigned(self):
        return self.last_verified is not None

    @property
    def fields(self):
        names = []
        if self.line_type:
            names.append("line_type_intelligence")
        if self.line_status:
            names.append("line_status")
        if self.reassigned:
            names.append("reassigned_number")
        return names


@dataclass(frozen=True)
class LookupResult:
    line_type: str  # A LineType value, "unknown" for anything unexpected; "" when not asked.
    raw_type: str = ""
    carrier_name: str = ""
    error: str = ""
    line_status: str = ""  # A LineStatus value; "" when not asked or not answered.
    reassigned: str = ""  # A Reassigned value; "" when not asked or not answered.
    request: LookupRequest | None = field(default=None, compare=False)

    @property
    def is_sms_capable(self):
        # Unknown does not block sending (SPEC §2 lists what cannot take SMS).
        return self.line_type not in NOT_SMS_CAPABLE

    @property
    def label(self):
        return LineType(self.line_type).label if self.line_type else "Not looked up"

    @property
    def line_status_label(self):
        return LineStatus(self.line_status).label if self.line_status else ""

    @property
    def is_disconnected(self):
        return self.line_status == LineStatus.INACTIVE


def normalize(raw_type, carrier_name="", error=""):
    """A LookupResult from whatever the lookup said; unknown or malformed types are unknown."""
    raw = raw_type if isinstance(raw_type, str) else ""
    line_type = raw if raw in LineType.values else LineType.UNKNOWN
    carrier = carrier_name if isinstance(carrier_name, str) else ""
    return LookupResult(line_type=line_type, raw_type=raw, carrier_name=carrier, error=error)


def is_us_number(phone):
    """Whether `phone` is a United States number: the reassigned-number check covers only
    those (Canada and the Caribbean share +1, so the country code is not enough)."""
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.region_code_for_number(parsed) == "US"


# Reading an answer --------------------------------------------------------------------------


def _choice(value, choices):
    return value if isinstance(value, str) and value in choices.values else ""


def _from_answer(request, answer):
    """A LookupResult from one Lookup v2 answer (a dict, as Twilio sends it)."""
    errors = []
    if request.line_type:
        info = answer.get("line_type_intelligence")
        if isinstance(info, dict):
            result = normalize(info.get("type"), info.get("carrier_name") or "")
            if info.get("error_code"):
                errors.append(f"line type {info['error_code']}")
        else:
            log.warning("lookup of %s returned no line_type_intelligence", mask(request.phone))
            result = normalize(None)
            errors.append("no line type in the answer")
    else:
        result = LookupResult(line_type="")
    line_status = ""
    if request.line_status:
        info = answer.get("line_status")
        if isinstance(info, dict):
            line_status = _choice(info.get("status"), LineStatus)
            if info.get("status") and not line_status:
                line_status = LineStatus.UNKNOWN  # a value Twilio added since: not a flag
            if info.get("error_code"):
                errors.append(f"line status {info['error_code']}")
        else:
            errors.append("no line status in the answer")
    reassigned = ""
    if request.reassigned:
        info = answer.get("reassigned_number")
        if isinstance(info, dict):
            reassigned = _choice(info.get("is_number_reassigned"), Reassigned)
            if info.get("error_code"):
                errors.append(f"reassigned {info['error_code']}")
        else:
            errors.append("no reassigned-number answer")
    return LookupResult(
        line_type=result.line_type,
        raw_type=result.raw_type,
        carrier_name=result.carrier_name,
        error="; ".join(errors),
        line_status=line_status,
        reassigned=reassigned,
        request=request,
    )


def _simulated(request):
    entry = plan_for(request.phone)
    return LookupResult(
        line_type=entry.line_type if request.line_type else "",
        carrier_name=entry.carrier if request.line_type else "",
        raw_type=entry.line_type if request.line_type else "",
        line_status=entry.line_status if request.line_status else "",
        reassigned=(
            reassigned_since(request.phone, request.last_verified) if request.reassigned else ""
        ),
        request=request,
    )


# Asking -------------------------------------------------------------------------------------


def lookup(request):
    """Look one number up with the configured backend. Raises TwilioRestException when Twilio
    refuses (a bad number) and OSError when it cannot be reached; never for an odd answer."""
    if settings.SMS_BACKEND != "twilio":
        return _simulated(request)
    params = {"fields": ",".join(request.fields)}
    if request.reassigned:
        params["last_verified_date"] = request.last_verified.strftime("%Y%m%d")
    instance = twilio_client().lookups.v2.phone_numbers(request.phone).fetch(**params)
    answer = {
        "line_type_intelligence": instance.line_type_intelligence,
        "line_status": instance.line_status,
        "reassigned_number": instance.reassigned_number,
    }
    return _from_answer(request, answer)


def lookup_line_type(phone):
    """The line type of `phone` alone (what every organization gets)."""
    return lookup(LookupRequest(phone))


def lookup_many(requests):
    """Answer every request: a LookupResult, or the exception that request met, in order.

    The twilio backend asks LOOKUP_BATCH_SIZE numbers per batch request; the pacing of the
    calls is the caller's (it knows how many numbers each call carries).
    """
    if settings.SMS_BACKEND != "twilio":
        return [_simulated(request) for request in requests]
    answers = []
    for start in range(0, len(requests), settings.LOOKUP_BATCH_SIZE):
        answers.extend(lookup_batch(requests[start : start + settings.LOOKUP_BATCH_SIZE]))
    return answers


def lookup_batch(requests):
    """One `POST /v2/batch/query` for up to LOOKUP_BATCH_SIZE numbers.

    Each answer is matched to its request by correlation id (Twilio echoes it), else by
    number. A number the answer leaves out, or answers with a `twilio_error_code`, gets a
    TwilioRestException of its own; a refused batch is asked again number by number.
    """
    body = {
        "phone_numbers": [
            {
                "correlation_id": str(index),
                "phone_number": request.phone,
                "fields": request.fields,
                **(
                    {
                        "reassigned_number": {
                            "last_verified_date": request.last_verified.strftime("%Y%m%d")
                        }
                    }
                    if request.reassigned
                    else {}
                ),
            }
            for index, request in enumerate(requests)
        ]
    }
    try:
        instance = twilio_client().lookups.v2.query.create(lookup_request=_Body(body))
    except TwilioRestException as exc:
        if exc.status in (400, 404, 413, 422):
            log.warning("batch lookup refused (%s); asking number by number", exc.status)
            return [_lookup_or_error(request) for request in requests]
        raise
    items = instance.phone_numbers if isinstance(instance.phone_numbers, list) else []
    by_id, by_phone = {}, {}
    for item in items:
        if isinstance(item, dict):
            by_id.setdefault(str(item.get("correlation_id")), item)
            by_phone.setdefault(item.get("phone_number"), item)
    answers = []
    for index, request in enumerate(requests):
        item = by_id.get(str(index)) or by_phone.get(request.phone)
        if item is None:
            answers.append(_refused(request, 404, "no answer for this number in the batch"))
        elif item.get("twilio_error_code"):
            code = item["twilio_error_code"]
            answers.append(_refused(request, 400, f"Twilio error {code}", code))
        else:
            answers.append(_from_answer(request, item))
    return answers


class _Body:
    """The request body as twilio-python's batch query sends it (it calls `to_dict`)."""

    def __init__(self, body):
        self.body = body

    def to_dict(self):
        return self.body


def _refused(request, status, reason, code=None):
    """The error of one number of a batch, as if it had been asked alone."""
    log.warning("lookup of %s: %s", mask(request.phone), reason)
    return TwilioRestException(status=status, uri="/v2/batch/query", msg=reason, code=code)


def _lookup_or_error(request):
    try:
        return lookup(request)
    except (TwilioRestException, OSError) as exc:
        return exc
