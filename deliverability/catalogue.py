"""The Twilio error catalogue (SPEC §4): one table, and the lookup every part of Reachable uses.

Staff never see a bare code: `describe(code)` gives the category, the reason they read, and
the effect on the number. A new code is one row in ERRORS.
"""

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    INVALID = "invalid"
    OPTED_OUT = "opted_out"
    UNREACHABLE = "unreachable"
    CONTENT = "content"
    SENDER = "sender"
    THROUGHPUT = "throughput"


class Effect(StrEnum):
    AUTO_INVALID = "auto_invalid"  # Automatic Invalid flag, not restorable with Mark as Valid.
    CARRIER_STOP = "carrier_stop"  # Opt-out with reason carrier_stop.
    COUNT_ERROR = "count_error"  # Counts toward the recent/global error rules.
    NONE = "none"  # Nothing on the number (content: rewrite the message).
    SENDER_ALERT = "sender_alert"  # Nothing on the number; an org-level alert.
    RETRY = "retry"  # Nothing on the number; the send is retried with back-off.


EFFECT_OF = {
    Category.INVALID: Effect.AUTO_INVALID,
    Category.OPTED_OUT: Effect.CARRIER_STOP,
    Category.UNREACHABLE: Effect.COUNT_ERROR,
    Category.CONTENT: Effect.NONE,
    Category.SENDER: Effect.SENDER_ALERT,
    Category.THROUGHPUT: Effect.RETRY,
}

# What staff are told to do, by category.
ADVICE = {
    Category.INVALID: "Ask the member for a mobile number and update their profile.",
    Category.OPTED_OUT: "The member must text START to receive messages again.",
    Category.UNREACHABLE: "The phone could not be reached. Try again later or use another channel.",
    Category.CONTENT: "Rewrite the message (no shortened links, less capitals) and wait "
    "15–30 minutes before sending to this member again.",
    Category.SENDER: "A problem with our sending number or its registration; an administrator "
    "has been alerted.",
    Category.THROUGHPUT: "Twilio asked us to slow down; the message is retried automatically.",
}

# HTTP 429 from the Messages API has no Twilio code; it is recorded under this pseudo-code.
HTTP_TOO_MANY_REQUESTS = 429

# code: (category, the reason staff read)
ERRORS = {
    21211: (Category.INVALID, "Fails E.164 validation"),
    21614: (Category.INVALID, "Landline; not SMS-capable"),
    21265: (Category.INVALID, "Short code; not allowed as a destination"),
    21268: (Category.INVALID, "Premium-rate number; blocked by Twilio"),
    30005: (Category.INVALID, "Carrier response that the number does not exist"),
    21610: (Category.OPTED_OUT, "Message blocked by STOP"),
    30003: (Category.UNREACHABLE, "Unreachable"),
    30004: (Category.UNREACHABLE, "Prohibited by carrier"),
    30006: (Category.UNREACHABLE, "Landline or unreachable carrier"),
    30008: (Category.UNREACHABLE, "Network error"),
    30017: (Category.UNREACHABLE, "Carrier network congestion"),
    30036: (Category.UNREACHABLE, "Message expired"),
    30410: (Category.UNREACHABLE, "Provider timeout"),
    21612: (Category.UNREACHABLE, "Not reachable via SMS"),
    30007: (Category.CONTENT, "Spam detected (carrier filtering)"),
    30019: (Category.CONTENT, "Content too large"),
    21212: (Category.SENDER, "Invalid sending number"),
    21606: (Category.SENDER, "Sending number is not SMS-capable or not ours"),
    21408: (Category.SENDER, "Sending to this region is not enabled"),
    30002: (Category.SENDER, "Twilio account suspended"),
    30018: (Category.SENDER, "Sending number is not verified"),
    30024: (Category.SENDER, "Sender registration incomplete"),
    30034: (Category.SENDER, "Sending number is not registered (10DLC)"),
    30001: (Category.THROUGHPUT, "Queue overflow"),
    30022: (Category.THROUGHPUT, "Throughput limit exceeded"),
    30023: (Category.THROUGHPUT, "Daily message limit reached"),
    30450: (Category.THROUGHPUT, "Message delivery blocked by rate limit"),
    HTTP_TOO_MANY_REQUESTS: (Category.THROUGHPUT, "Too many requests"),
}

# Automatic flags a fresh lookup can disprove (SPEC §2): "Re-check number" may clear these;
# 21211, 21265, 21268 and 30005 it cannot. LOOKUP is a line type that cannot take SMS;
# LINE_STATUS is a number its carrier reports disconnected (Lookup's line status `inactive`).
LOOKUP = "lookup"
LINE_STATUS = "line_status"
DISCONNECTED_REASON = "Disconnected (carrier line status)"
RECHECKABLE_INVALID_CODES = frozenset({"21614", "30006", LOOKUP, LINE_STATUS})


@dataclass(frozen=True)
class ErrorInfo:
    code: int | None
    category: Category
    reason: str
    effect: Effect
    known: bool

    @property
    def advice(self):
        return ADVICE[self.category]

    @property
    def is_number_attributable(self):
        """Only unreachable-category errors count toward the error rules (SPEC §5)."""
        return self.category == Category.UNREACHABLE

    @property
    def label(self):
        return f"{self.reason} ({self.code})" if self.code is not None else self.reason


def _as_int(code):
    if code is None or code == "":
        return None
    try:
        return int(str(code).strip())
    except (TypeError, ValueError):
        return None


def describe(code):
    """Category, reason and effect for any code, known or not (unknown counts as unreachable)."""
    number = _as_int(code)
    if number in ERRORS:
        category, reason = ERRORS[number]
        return ErrorInfo(number, category, reason, EFFECT_OF[category], known=True)
    if code is None or code == "":
        reason = "Failed without an error code"
    else:
        reason = f"Unknown error (code {number if number is not None else code})"
    return ErrorInfo(number, Category.UNREACHABLE, reason, Effect.COUNT_ERROR, known=False)


def codes_in(category):
    """Every known code of a category, for filters and reports."""
    return sorted(code for code, (cat, _) in ERRORS.items() if cat == category)
