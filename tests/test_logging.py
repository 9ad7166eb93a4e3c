"""No log line carries a whole phone number: what the mask catches and what it leaves alone."""

import logging
import sys

import pytest

from config.logfilters import MaskingFormatter, mask_numbers


@pytest.mark.parametrize(
    ("logged", "masked"),
    [
        ("sent to +16175550101", "sent to +1••••••••01"),
        (
            "GET /v2/PhoneNumbers/%2B16175550101?Fields=x",
            "GET /v2/PhoneNumbers/%2B1••••••••01?Fields=x",
        ),
        ("GET /contacts/?q=%2b16175550101 HTTP/1.1", "GET /contacts/?q=%2b1••••••••01 HTTP/1.1"),
        ("GET /contacts/?q=6175550101&page=2", "GET /contacts/?q=••••••••01&page=2"),
        ("lookups/16175550101", "lookups/•••••••••01"),
        ("?q=(617)%20555-0101", "?q=(•••)%20•••-••01"),
        ("?q=%28617%29+555-0101", "?q=%28•••%29+•••-••01"),
        ("?next=/contacts/%3Fq%3D%252B16175550101", "?next=/contacts/%3Fq%3D%252B1••••••••01"),
        ("?next=%3Fq%3D%2528617%2529%2B555-0101", "?next=%3Fq%3D%2528•••%2529%2B•••-••01"),
        ("row 3: (617) 555-0101", "row 3: (•••) •••-••01"),
        ("1-617-555-0101, 617.555.0101", "•-•••-•••-••01, •••.•••.••01"),
        ("+1 (617) 555-0101", "+1 (•••) •••-••01"),
        ("+44 20 7946 0958", "+4• •• •••• ••58"),
    ],
)
def test_it_masks_a_number_in_every_shape_it_is_logged_in(logged, masked):
    assert mask_numbers(logged) == masked


@pytest.mark.parametrize(
    "logged",
    [
        "2026-12-02 06:04:16,123 INFO celery.worker.consumer",
        '127.0.0.1 - - [02/Dec/2026:06:04:16 +0000] "GET /healthz HTTP/1.1" 200 2',
        "Task x[e3b0c442-98fc-1c14-9afb-4c8996fb9242] succeeded in 0.004417611999999999s",
        "status callback for SM1234567890abcdef1234567890abcdef",
        "imported 1234567 rows from 127.0.0.1:8000",
    ],
)
def test_it_leaves_times_ids_and_counts_alone(logged):
    assert mask_numbers(logged) == logged


def test_the_formatter_masks_the_exception_and_its_traceback():
    try:
        raise ValueError("row 7: could not parse +16175550101")
    except ValueError:
        record = logging.LogRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "import of %s failed",
            ("(617) 555-0102",),
            sys.exc_info(),
        )

    line = MaskingFormatter("%(levelname)s %(message)s").format(record)

    assert line.startswith("ERROR import of (•••) •••-••02 failed\nTraceback")
    assert "ValueError: row 7: could not parse +1••••••••01" in line
    assert "6175550101" not in line and "555-0102" not in line
