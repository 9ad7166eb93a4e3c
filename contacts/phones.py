"""Reading phone numbers as people type them (SPEC §2, invalid_number).

`parse_phone` never raises and never loses what was entered: whatever comes in, the raw value is
returned as it was (trimmed to the column's length), with the E.164 form when the value is a
valid, SMS-routable destination, or the reason it is not.
"""

import functools
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType, shortnumberinfo

RAW_MAX_LENGTH = 64

# Words people put in a phone field when they have no number to give.
PLACEHOLDER_WORDS = {"none", "n/a", "na", "no", "nil", "null", "unknown", "-", "--", "x", "tbd"}

REASON_EMPTY = "No phone number"
REASON_NOT_A_NUMBER = "Not a phone number"
REASON_WRONG_LENGTH = "Wrong number of digits"
REASON_NO_SUCH_AREA = "Area code or number range does not exist"
REASON_NO_AREA_CODE = "No area code: enter the full number with its area code"
REASON_SHORT_CODE = "Short code; not allowed as a destination"
REASON_PREMIUM = "Premium-rate number; not allowed as a destination"


@dataclass(frozen=True)
class ParsedPhone:
    raw: str
    e164: str
    status: str  # One of contacts.models.Contact.PhoneStatus values.
    error: str

    @property
    def is_valid(self):
        return self.status == "valid"


def _invalid(raw, reason):
    return ParsedPhone(raw=raw, e164="", status="invalid_number", error=reason)


def parse_phone(raw, region="US"):
    """Parse `raw` in `region` (ISO 3166 alpha-2) into a ParsedPhone. Never raises."""
    if raw is None:
        raw = ""
    raw = str(raw).replace("\x00", "").strip()[:RAW_MAX_LENGTH]
    if not raw:
        return ParsedPhone(raw="", e164="", status="missing", error=REASON_EMPTY)
    if raw.lower() in PLACEHOLDER_WORDS:
        return _invalid(raw, REASON_NOT_A_NUMBER)
    region = (region or "US").upper()
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return _invalid(raw, REASON_NOT_A_NUMBER)
    except Exception:  # The library is not meant to raise anything else; junk must not crash us.
        return _invalid(raw, REASON_NOT_A_NUMBER)
    try:
        if shortnumberinfo.is_valid_short_number(number) and not phonenumbers.is_valid_number(
            number
        ):
            return _invalid(raw, REASON_SHORT_CODE)
        if not phonenumbers.is_valid_number(number):
            possible = phonenumbers.is_possible_number_with_reason(number)
            if possible == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
                return _invalid(raw, REASON_NO_AREA_CODE)
            if phonenumbers.is_possible_number(number):
                return _invalid(raw, REASON_NO_SUCH_AREA)
            return _invalid(raw, REASON_WRONG_LENGTH)
        if phonenumbers.number_type(number) == PhoneNumberType.PREMIUM_RATE:
            return _invalid(raw, REASON_PREMIUM)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    except Exception:
        return _invalid(raw, REASON_NOT_A_NUMBER)
    return ParsedPhone(raw=raw, e164=e164, status="valid", error="")


@functools.lru_cache(maxsize=20_000)
def national(e164, region="US"):
    """How staff read a number: "(212) 555-0118" for one of the org's own country code, the
    international form for any other; "" stays "", anything unparsable is shown unchanged.
    Cached: a page shows the same numbers again at every refresh, and parsing is the cost."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    if number.country_code == phonenumbers.country_code_for_region((region or "US").upper()):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def mask(e164):
    """A number fit for logs: the country code and the last two digits only."""
    if not e164:
        return ""
    return f"{e164[:2]}{'•' * max(0, len(e164) - 4)}{e164[-2:]}"
