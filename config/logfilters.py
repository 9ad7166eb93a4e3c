"""Logging that never writes a whole phone number."""

import logging
import re

# E.164 numbers, which is how Reachable stores and logs every number.
_PHONE = re.compile(r"\+\d{8,15}")


def mask_numbers(text):
    return _PHONE.sub(
        lambda m: m.group(0)[:2] + "•" * max(0, len(m.group(0)) - 4) + m.group(0)[-2:], text
    )


class MaskPhoneNumbers(logging.Filter):
    """Masks anything that looks like a phone number in the formatted message."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # A badly formatted record is logged as it is.
            return True
        masked = mask_numbers(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True
