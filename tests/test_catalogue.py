"""The Twilio error catalogue (SPEC §4): every code has a category, a reason and an effect."""

import pytest

from deliverability.catalogue import (
    ERRORS,
    RECHECKABLE_INVALID_CODES,
    Category,
    Effect,
    describe,
)

# SPEC §4 written out row by row: code -> (category, effect, reason shown to staff). The SPEC
# names no reason for the sender and throughput codes, so those rows carry None.
SPEC_TABLE = {
    21211: ("invalid", "auto_invalid", "Fails E.164 validation"),
    21614: ("invalid", "auto_invalid", "Landline; not SMS-capable"),
    21265: ("invalid", "auto_invalid", "Short code; not allowed as a destination"),
    21268: ("invalid", "auto_invalid", "Premium-rate number; blocked by Twilio"),
    30005: ("invalid", "auto_invalid", "Carrier response that the number does not exist"),
    21610: ("opted_out", "carrier_stop", "Message blocked by STOP"),
    30003: ("unreachable", "count_error", "Unreachable"),
    30004: ("unreachable", "count_error", "Prohibited by carrier"),
    30006: ("unreachable", "count_error", "Landline or unreachable carrier"),
    30008: ("unreachable", "count_error", "Network error"),
    30017: ("unreachable", "count_error", "Carrier network congestion"),
    30036: ("unreachable", "count_error", "Message expired"),
    30410: ("unreachable", "count_error", "Provider timeout"),
    21612: ("unreachable", "count_error", "Not reachable via SMS"),
    30007: ("content", "none", "Spam detected (carrier filtering)"),
    30019: ("content", "none", "Content too large"),
    21212: ("sender", "sender_alert", None),
    21606: ("sender", "sender_alert", None),
    21408: ("sender", "sender_alert", None),
    30002: ("sender", "sender_alert", None),
    30018: ("sender", "sender_alert", None),
    30024: ("sender", "sender_alert", None),
    30034: ("sender", "sender_alert", None),
    30001: ("throughput", "retry", None),
    30022: ("throughput", "retry", None),
    30023: ("throughput", "retry", None),
    30450: ("throughput", "retry", None),
    429: ("throughput", "retry", None),  # HTTP 429 from the Messages API.
}


@pytest.mark.parametrize("code, row", SPEC_TABLE.items(), ids=str)
def test_it_maps_each_spec_code_to_its_category_effect_and_reason(code, row):
    category, effect, reason = row
    info = describe(code)
    assert info.known
    assert (info.category, info.effect) == (category, effect)
    if reason is not None:
        assert info.reason == reason
    else:
        assert info.reason  # Staff never see a bare code.
    # Callbacks carry the code as text.
    assert describe(str(code)) == info


def test_it_holds_every_spec_code():
    assert set(SPEC_TABLE) <= set(ERRORS)


def test_it_treats_an_unknown_code_as_unreachable():
    info = describe(39999)
    assert (info.category, info.effect, info.known) == (
        Category.UNREACHABLE,
        Effect.COUNT_ERROR,
        False,
    )
    assert info.reason == "Unknown error (code 39999)"
    assert describe("39999").reason == "Unknown error (code 39999)"


@pytest.mark.parametrize(
    "junk",
    [None, "", "abc", " ", "12.5", "9" * 5000, object()],
    # Stable ids: pytest-xdist's workers must collect the same names (no memory addresses).
    ids=["None", "empty", "abc", "blank", "12.5", "5000 nines", "an object"],
)
def test_it_never_raises_on_junk_codes(junk):
    info = describe(junk)
    assert info.category == Category.UNREACHABLE
    assert not info.known
    assert info.reason


@pytest.mark.parametrize("code", SPEC_TABLE, ids=str)
def test_it_attributes_only_unreachable_errors_to_the_number(code):
    info = describe(code)
    assert info.is_number_attributable == (info.category == Category.UNREACHABLE)


def test_it_attributes_unknown_codes_to_the_number():
    assert describe(39999).is_number_attributable


def test_it_lets_recheck_clear_only_flags_a_lookup_can_disprove():
    assert {"21614", "30006", "lookup", "line_status"} == RECHECKABLE_INVALID_CODES
    assert not {"21211", "21265", "21268", "30005"} & RECHECKABLE_INVALID_CODES
