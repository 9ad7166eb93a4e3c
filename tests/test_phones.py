"""Phone numbers as people type them (SPEC §2): junk never raises, the raw value is never lost."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from contacts.phones import RAW_MAX_LENGTH, mask, national, parse_phone
from tests.factories import make_contact


@pytest.mark.parametrize(
    "raw, e164",
    [
        ("(212) 555-0123", "+12125550123"),
        ("212.555.0123", "+12125550123"),
        ("+1 212 555 0123", "+12125550123"),
        ("  (212) 555-0123  ", "+12125550123"),
        ("٢١٢٥٥٥٠١٢٣", "+12125550123"),  # Arabic-Indic digits
        ("+44 20 7183 8750", "+442071838750"),  # An explicit country code beats the region.
        ("+15005550006", "+15005550006"),  # Twilio's magic "valid" test number.
    ],
)
def test_it_reads_valid_numbers_as_e164(raw, e164):
    parsed = parse_phone(raw, "US")
    assert (parsed.status, parsed.e164, parsed.raw, parsed.error) == (
        "valid",
        e164,
        raw.strip(),
        "",
    )
    assert parsed.is_valid


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("none", "Not a phone number"),
        ("n/a", "Not a phone number"),
        ("N/A", "Not a phone number"),
        ("call me", "Not a phone number"),
        ("212555012", "Wrong number of digits"),
        ("12345", "Short code; not allowed as a destination"),
        ("+1 111 555 0123", "Area code or number range does not exist"),
        ("555-0122", "No area code: enter the full number with its area code"),
        ("900-555-0123", "Premium-rate number; not allowed as a destination"),
    ],
)
def test_it_keeps_the_raw_value_of_an_unusable_number_and_says_why(raw, reason):
    parsed = parse_phone(raw, "US")
    assert (parsed.status, parsed.e164, parsed.raw, parsed.error) == (
        "invalid_number",
        "",
        raw,
        reason,
    )
    assert not parsed.is_valid


@pytest.mark.parametrize("raw", ["", "   ", None, "\x00"])
def test_it_calls_an_empty_value_missing(raw):
    parsed = parse_phone(raw)
    assert (parsed.status, parsed.e164, parsed.raw) == ("missing", "", "")
    assert parsed.error == "No phone number"


def test_it_reads_national_numbers_in_the_given_region():
    assert parse_phone("020 7183 8750", "GB").e164 == "+442071838750"


def _kept(raw):
    """What the module documents it keeps: NULs removed, trimmed, cut to the column's length."""
    return raw.replace("\x00", "").strip()[:RAW_MAX_LENGTH]


# Any text at all, plus text that looks like numbers: unicode digits, separators, control
# characters, and strings far longer than the column.
phone_like = st.text(
    alphabet=st.one_of(
        st.sampled_from("+()-. /x#*0123456789"),
        st.characters(categories=["Nd"]),  # Digits of every script.
        st.characters(categories=["Cc", "Zs"]),  # Control characters and spaces.
    ),
    max_size=40,
)
any_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(categories=["Cs", "Cc", "Cf", "Co", "Nd"]), max_size=50),
    phone_like,
    st.text(min_size=RAW_MAX_LENGTH + 1, max_size=2_000),
    st.builds(lambda digits, padding: digits + padding, phone_like, st.text(max_size=200)),
)


@settings(max_examples=500, deadline=None)
@given(raw=any_text, region=st.sampled_from(["US", "CA", "GB", "", None]))
@example(raw="\x00(212)\x00 555-0123\x00", region="US")
@example(raw=" " * 100 + "2125550123", region="US")
@example(raw="1" * 10_000, region="US")
@example(raw="\ud800", region="US")
def test_it_never_raises_and_keeps_what_was_entered(raw, region):
    parsed = parse_phone(raw, region)
    assert parsed.raw == _kept(raw)
    assert parsed.status in {"valid", "invalid_number", "missing"}
    assert bool(parsed.e164) == (parsed.status == "valid")
    assert (parsed.status == "missing") == (parsed.raw == "")
    if parsed.status == "valid":
        assert parsed.e164.startswith("+") and parsed.e164[1:].isdigit()
        assert len(parsed.e164) <= 20  # The Contact.phone_e164 column.
        # E.164 is a fixed point: reading it again, in any region, gives the same number.
        assert parse_phone(parsed.e164, region).e164 == parsed.e164
        assert parse_phone(parsed.e164, "GB").e164 == parsed.e164
    else:
        assert parsed.error


@settings(max_examples=200, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=10, max_size=11),
    region=st.sampled_from(["US", "CA"]),
)
def test_it_either_reads_ten_digits_or_says_why(digits, region):
    parsed = parse_phone(digits, region)
    if parsed.is_valid:
        # 011 is how North Americans dial abroad: "0113522020" is Luxembourg's +352 2020.
        if not digits.startswith("011"):
            assert parsed.e164.startswith("+1")
        assert parse_phone(parsed.e164).e164 == parsed.e164
    else:
        assert parsed.error


def test_it_keeps_what_was_entered_on_the_contact(org):
    contact = make_contact(org, " n/a ")
    contact.refresh_from_db()
    assert (contact.phone_raw, contact.phone_e164, contact.phone_status, contact.phone_error) == (
        "n/a",
        "",
        "invalid_number",
        "Not a phone number",
    )

    contact.set_phone("(212) 555-0123")
    contact.save()
    contact.refresh_from_db()
    assert (contact.phone_raw, contact.phone_e164, contact.phone_status) == (
        "(212) 555-0123",
        "+12125550123",
        "valid",
    )


def test_it_reads_a_contacts_number_in_the_orgs_region(org):
    org.default_region = "GB"
    org.save()
    contact = make_contact(org, "020 7183 8750")
    assert (contact.phone_raw, contact.phone_e164) == ("020 7183 8750", "+442071838750")


def test_it_shows_only_the_ends_of_a_number_in_logs():
    assert mask("+12125550123") == "+1••••••••23"
    assert mask("+442071838750") == "+4•••••••••50"
    assert mask("") == ""
    assert mask(None) == ""


@pytest.mark.parametrize(
    "e164, region, shown",
    [
        ("+12125550118", "US", "(212) 555-0118"),
        ("+442079460958", "US", "+44 20 7946 0958"),
        ("+442079460958", "GB", "020 7946 0958"),
        ("", "US", ""),
    ],
)
def test_numbers_show_in_the_orgs_national_format(e164, region, shown):
    assert national(e164, region) == shown
