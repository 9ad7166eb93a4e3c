"""Phone numbers as people type them (SPEC §2): junk never raises, the raw value is never lost."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contacts.phones import RAW_MAX_LENGTH, mask, parse_phone
from tests.factories import make_contact


@pytest.mark.parametrize(
    "raw, e164",
    [
        ("(212) 555-0123", "+12125550123"),
        ("212.555.0123", "+12125550123"),
        ("+1 212 555 0123", "+12125550123"),
        ("+44 20 7183 8750", "+442071838750"),
        ("+15005550006", "+15005550006"),
    ],
)
def test_valid_numbers_become_e164(raw, e164):
    parsed = parse_phone(raw, "US")
    assert (parsed.status, parsed.e164, parsed.raw) == ("valid", e164, raw)


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("none", "Not a phone number"),
        ("n/a", "Not a phone number"),
        ("call me", "Not a phone number"),
        ("212555012", "Wrong number of digits"),
        ("12345", "Short code; not allowed as a destination"),
        ("+1 111 555 0123", "Area code or number range does not exist"),
        ("900-555-0123", "Premium-rate number; not allowed as a destination"),
    ],
)
def test_unusable_numbers_keep_the_raw_value_and_say_why(raw, reason):
    parsed = parse_phone(raw, "US")
    assert (parsed.status, parsed.e164, parsed.raw, parsed.error) == (
        "invalid_number",
        "",
        raw,
        reason,
    )


def test_an_empty_value_is_missing():
    assert parse_phone("   ").status == "missing"
    assert parse_phone(None).status == "missing"


def test_the_region_reads_national_numbers():
    assert parse_phone("020 7183 8750", "GB").e164 == "+442071838750"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.from_regex(r"[+()\-. 0-9a-z]{0,30}", fullmatch=True)))
def test_any_text_parses_without_raising_and_keeps_the_raw_value(raw):
    parsed = parse_phone(raw, "US")
    assert parsed.raw == raw.replace("\x00", "").strip()[:RAW_MAX_LENGTH]
    assert parsed.status in {"valid", "invalid_number", "missing"}
    assert bool(parsed.e164) == (parsed.status == "valid")
    if parsed.status == "valid":
        assert parse_phone(parsed.e164, "US").e164 == parsed.e164  # E.164 is a fixed point
    else:
        assert parsed.error


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789", min_size=10, max_size=10), st.sampled_from(["US", "CA"]))
def test_ten_digit_numbers_either_parse_or_say_why(digits, region):
    parsed = parse_phone(digits, region)
    assert parsed.e164.startswith("+1") if parsed.is_valid else parsed.error


def test_a_contact_keeps_what_was_entered(org):
    contact = make_contact(org, " n/a ")
    contact.refresh_from_db()
    assert (contact.phone_raw, contact.phone_e164, contact.phone_status) == (
        "n/a",
        "",
        "invalid_number",
    )


def test_logs_show_only_the_ends_of_a_number():
    assert mask("+12125550123") == "+1••••••••23"
    assert mask("") == ""
