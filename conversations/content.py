"""Content warnings while composing (SPEC §5): shown to staff, never blocking the send."""

import re
import unicodedata
from dataclasses import dataclass

from conversations.segments import segment

SHORTENERS = (
    "bit.ly",
    "tinyurl.com",
    "t.co",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "rb.gy",
    "tiny.cc",
    "bl.ink",
    "lnkd.in",
)
_SHORT_URL = re.compile(
    r"(?:https?://)?(?:www\.)?(" + "|".join(re.escape(s) for s in SHORTENERS) + r")/\S+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Composition:
    warnings: list
    encoding: str
    segments: int
    characters: int


def _is_emoji(ch):
    return unicodedata.category(ch) == "So" or 0x1F000 <= ord(ch) <= 0x1FAFF


def content_warnings(body):
    """Plain-language warnings about what carriers tend to filter."""
    body = body or ""
    warnings = []
    if _SHORT_URL.search(body):
        warnings.append(
            "Shortened links (bit.ly, tinyurl…) are often filtered by carriers: use your full "
            "website address."
        )
    letters = [ch for ch in body if ch.isalpha()]
    if len(letters) >= 12 and sum(ch.isupper() for ch in letters) / len(letters) > 0.6:
        warnings.append("ALL CAPS text looks like spam to carriers: write in normal case.")
    emoji = sum(1 for ch in body if _is_emoji(ch))
    special = sum(1 for ch in body if not ch.isalnum() and not ch.isspace() and not _is_emoji(ch))
    if emoji > 3 or (len(body) >= 20 and special / len(body) > 0.15):
        warnings.append("Many emoji or special characters can trigger carrier filtering.")
    return warnings


def compose_check(body):
    parts = segment(body)
    return Composition(
        warnings=content_warnings(body),
        encoding=parts.encoding,
        segments=parts.segments,
        characters=len(body or ""),
    )
