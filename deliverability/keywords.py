"""Inbound keywords (SPEC §3): Twilio Advanced Opt-Out defaults, FCC 2025 rules.

A keyword counts only when it is the whole message, ignoring case, surrounding whitespace and
trailing punctuation ("Stop", " stop. "); "stop by at 5?" is not an opt-out. With "reasonable
means" on, a message that asks to stop in other words is flagged for staff review instead.
"""

import re
from enum import StrEnum


class Keyword(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    REVIEW = "review"  # Looks like a request to stop; a person decides.
    NONE = "none"


OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

# Twilio's Advanced Opt-Out tells us what it already did in the OptOutType parameter.
OPT_OUT_TYPE = {"STOP": Keyword.OPT_OUT, "START": Keyword.OPT_IN, "HELP": Keyword.HELP}

_EDGE_PUNCTUATION = ".!?,;:'\"()[]*-~ \t\r\n\u00a0"

# Phrases that ask, in plain words, not to be texted ("reasonable means" of the FCC 2025 rule).
_REASONABLE_MEANS = re.compile(
    r"\b(stop|quit|cease)\b.{0,30}\b(text|texting|message|messaging|messages|contact|sms)"
    r"|\b(unsubscribe|opt[\s-]?out|remove me|take me off|leave me alone)\b"
    r"|\bdo ?n[o']?t (text|message|contact)\b"
    r"|\bno more (texts|messages)\b",
    re.IGNORECASE,
)


def normalize(body):
    return (body or "").strip(_EDGE_PUNCTUATION).upper()


def classify(body, *, reasonable_means=False):
    """What an inbound message asks for."""
    word = normalize(body)
    if word in OPT_OUT_WORDS:
        return Keyword.OPT_OUT
    if word in OPT_IN_WORDS:
        return Keyword.OPT_IN
    if word in HELP_WORDS:
        return Keyword.HELP
    if reasonable_means and _REASONABLE_MEANS.search(body or ""):
        return Keyword.REVIEW
    return Keyword.NONE


def from_opt_out_type(value):
    """The action Twilio's Advanced Opt-Out already took, or None."""
    return OPT_OUT_TYPE.get((value or "").strip().upper())
