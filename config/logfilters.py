"""Logging that never writes a whole phone number.

A number reaches a log line in many shapes: E.164 from our own code (`+16175550101`), without
its plus, percent-encoded in a URL (twilio's Lookup URLs: `/v2/PhoneNumbers/%2B16175550101`),
and as staff typed it into a search box, in a query string (`?q=(617)%20555-0101`,
`?q=%28617%29+555-0101`). The formatter below masks the whole formatted line, so the message,
its arguments, the exception and the traceback are all covered, whatever logger wrote them.
"""

import logging
import re


def _escaped(hex_code):
    """A character percent-encoded once (`%2B`) or twice (`%252B`, a URL inside a `?next=`)."""
    return rf"%(?:25)?{hex_code}"


_PLUS = rf"(?:\+|{_escaped('2B')})"
_OPEN = rf"(?:\(|{_escaped('28')})"
_CLOSE = rf"(?:\)|{_escaped('29')})"
# A space (also "+" or %20 in a query string, and "+" encoded once more), a dash or a dot.
_SEPARATOR = rf"(?:[ .\-+]|{_escaped('20')}|{_escaped('2B')}|{_escaped('2D')}|{_escaped('2E')})"

_PHONE = re.compile(
    rf"""
    # Not the tail of a word, a decimal or a longer run of digits; a percent-escape may come
    # right before (`q%3D6175550101`).
    (?: (?<=%[0-9A-Fa-f]{{2}}) | (?<![0-9A-Za-z.]) )
    (?:
        {_PLUS} \d{{8,15}}      # E.164: +16175550101, %2B16175550101
      | \d{{10,15}}             # E.164 without its plus, a national number: 6175550101
      | (?: {_PLUS}? 1 {_SEPARATOR}{{0,3}} )?   # a North American number as people write it:
        {_OPEN}? \d{{3}} {_CLOSE}? {_SEPARATOR}{{0,3}}  # (617) 555-0101, 617.555.0101,
        \d{{3}} {_SEPARATOR}{{0,3}} \d{{4}}             # +1 617 555 0101, 1-617-555-0101
      | {_PLUS} \d{{1,4}} (?: {_SEPARATOR}{{1,3}} {_OPEN}? \d{{1,8}} {_CLOSE}? ){{1,6}}
                                # another country's, in groups: +44 20 7946 0958
    )
    (?!\d)
    """,
    re.VERBOSE | re.IGNORECASE,
)
# Inside a match: a digit, or a percent-escape whose hex digits are not the number's.
_TOKEN = re.compile(r"%(?:25)?[0-9A-Fa-f]{2}|\d")


def _mask(match):
    """Every digit but the last two becomes a bullet; after a plus, the first digit (the country
    code, `+1`) stays too. Separators stay, so the shape of what was logged is still visible."""
    text = match.group(0)
    digits = [token.start() for token in _TOKEN.finditer(text) if token.group().isdigit()]
    if len(digits) < 8:  # Too short for a whole number: "+0000", a time zone.
        return text
    kept = set(digits[-2:])
    if re.match(_PLUS, text, re.IGNORECASE):
        kept.add(digits[0])
    return "".join("•" if i in digits and i not in kept else char for i, char in enumerate(text))


# Celery's task ids: a group of a UUID may be all digits ("…-b80c-481234563612").
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)


def mask_numbers(text):
    """`text` with every phone number masked; UUIDs are left whole."""
    parts, start = [], 0
    for uuid in _UUID.finditer(text):
        parts += [_PHONE.sub(_mask, text[start : uuid.start()]), uuid.group()]
        start = uuid.end()
    parts.append(_PHONE.sub(_mask, text[start:]))
    return "".join(parts)


class MaskingFormatter(logging.Formatter):
    """Formats as usual, then masks phone numbers in the whole line: the message and its
    arguments, the exception text and the traceback (`record.exc_text`) and any stack."""

    def format(self, record):
        return mask_numbers(super().format(record))
