"""The Twilio error catalogue (SPEC §4): one row per code, a category, a reason, an effect."""

import pytest

from deliverability.catalogue import (
    RECHECKABLE_INVALID_CODES,
    Category,
    Effect,
    codes_in,
    describe,
)

SPEC = {
    Category.INVALID: [21211, 21614, 21265, 21268, 30005],
    Category.OPTED_OUT: [21610],
    Category.UNREACHABLE: [30003, 30004, 30006, 30008, 30017, 30036, 30410, 21612],
    Category.CONTENT: [30007, 30019],
    Category.SENDER: [21212, 21606, 21408, 30002, 30018, 30024, 30034],
    Category.THROUGHPUT: [30001, 30022, 30023, 30450, 429],
}
EFFECTS = {
    Category.INVALID: Effect.AUTO_INVALID,
    Category.OPTED_OUT: Effect.CARRIER_STOP,
    Category.UNREACHABLE: Effect.COUNT_ERROR,
    Category.CONTENT: Effect.NONE,
    Category.SENDER: Effect.SENDER_ALERT,
    Category.THROUGHPUT: Effect.RETRY,
}
REASONS = {
    21211: "Fails E.164 validation",
    21614: "Landline; not SMS-capable",
    21265: "Short code; not allowed as a destination",
    21268: "Premium-rate number; blocked by Twilio",
    30005: "Carrier response that the number does not exist",
    21610: "Message blocked by STOP",
    30003: "Unreachable",
    30004: "Prohibited by carrier",
    30006: "Landline or unreachable carrier",
    30008: "Network error",
    30017: "Carrier network congestion",
    30036: "Message expired",
    30410: "Provider timeout",
    21612: "Not reachable via SMS",
    30007: "Spam detected (carrier filtering)",
    30019: "Content too large",
}


@pytest.mark.parametrize(
    "code, category", [(code, cat) for cat, codes in SPEC.items() for code in codes]
)
def test_every_code_of_the_spec_has_its_category_and_effect(code, category):
    info = describe(code)
    assert info.known
    assert (info.category, info.effect) == (category, EFFECTS[category])
    assert describe(str(code)) == info  # codes arrive as text in callbacks


@pytest.mark.parametrize("code, reason", REASONS.items())
def test_staff_read_the_reason_of_the_spec(code, reason):
    assert describe(code).reason == reason


def test_the_catalogue_holds_exactly_the_spec():
    assert {cat: sorted(codes) for cat, codes in SPEC.items()} == {
        cat: codes_in(cat) for cat in SPEC
    }


def test_an_unknown_code_counts_as_unreachable():
    info = describe(39999)
    assert (info.category, info.effect, info.known) == (
        Category.UNREACHABLE,
        Effect.COUNT_ERROR,
        False,
    )
    assert info.reason == "Unknown error (code 39999)"


@pytest.mark.parametrize("junk", [None, "", "abc", "12.5", object()])
def test_junk_codes_never_raise(junk):
    assert describe(junk).category == Category.UNREACHABLE


def test_only_unreachable_errors_count_against_a_number():
    attributable = {cat for cat in Category if describe(SPEC[cat][0]).is_number_attributable}
    assert attributable == {Category.UNREACHABLE}


def test_only_flags_a_lookup_can_disprove_are_recheckable():
    assert {"21614", "30006", "lookup"} == RECHECKABLE_INVALID_CODES
    assert not {"21211", "21265", "21268", "30005"} & RECHECKABLE_INVALID_CODES
