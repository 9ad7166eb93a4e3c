"""Line-type lookups (Twilio Lookup v2, line_type_intelligence), or the simulator's plan."""

import logging
from dataclasses import dataclass

from django.conf import settings

from contacts.phones import mask
from deliverability.models import NOT_SMS_CAPABLE, LineType
from deliverability.number_plan import plan_for
from deliverability.twilio_client import twilio_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LookupResult:
    line_type: str  # A LineType value; anything unexpected is "unknown".
    raw_type: str = ""
    carrier_name: str = ""
    error: str = ""

    @property
    def is_sms_capable(self):
        # Unknown does not block sending (SPEC §2 lists what cannot take SMS).
        return self.line_type not in NOT_SMS_CAPABLE

    @property
    def label(self):
        return LineType(self.line_type).label


def normalize(raw_type, carrier_name="", error=""):
    """A LookupResult from whatever the lookup said; unknown or malformed types are unknown."""
    raw = raw_type if isinstance(raw_type, str) else ""
    line_type = raw if raw in LineType.values else LineType.UNKNOWN
    carrier = carrier_name if isinstance(carrier_name, str) else ""
    return LookupResult(line_type=line_type, raw_type=raw, carrier_name=carrier, error=error)


def lookup_line_type(phone):
    """Look `phone` up with the configured backend. Never raises for a bad answer."""
    if settings.SMS_BACKEND != "twilio":
        entry = plan_for(phone)
        return normalize(entry.line_type, entry.carrier)
    result = twilio_client().lookups.v2.phone_numbers(phone).fetch(fields="line_type_intelligence")
    info = result.line_type_intelligence
    if not isinstance(info, dict):
        log.warning("lookup of %s returned no line_type_intelligence", mask(phone))
        return normalize(None, error="no line type in the answer")
    error = info.get("error_code")
    return normalize(info.get("type"), info.get("carrier_name") or "", str(error) if error else "")
