"""The rule every CSV export applies to its cells (OWASP "CSV Injection"): text a spreadsheet
would read as a formula is written with a leading apostrophe; E.164 numbers in phone columns
stay as they are, so an export can be imported again."""

import pytest

from contacts.exports import export_rows, spreadsheet_text


@pytest.mark.parametrize(
    "value, shown",
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("+16175550101", "'+16175550101"),  # in a free-text column, a number is text too
        ("Ann Lee", "Ann Lee"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_text_that_starts_like_a_formula_is_marked_as_text(value, shown):
    assert spreadsheet_text(value) == shown


@pytest.mark.parametrize("value", [30003, -5, 12.5, None])
def test_numbers_and_empty_cells_are_left_alone(value):
    assert spreadsheet_text(value) == value


def test_an_e164_number_in_a_phone_column_stays_re_importable():
    assert spreadsheet_text("+16175550101", phone=True) == "+16175550101"


@pytest.mark.parametrize("value", ["=1+1", "+1+1", "-1", "@A1", "+1 617 555 0101"])
def test_anything_else_in_a_phone_column_is_treated_as_text(value):
    assert spreadsheet_text(value, phone=True) == "'" + value


def test_export_rows_applies_the_rule_per_column():
    rows = export_rows(
        ["Contact", "Phone", "Note"],
        [["=cmd", "+16175550101", "@SUM(A1)"], ["Ann", "=cmd", "fine"]],
        phone_columns=("Phone",),
    )
    assert list(rows) == [
        ["Contact", "Phone", "Note"],
        ["'=cmd", "+16175550101", "'@SUM(A1)"],
        ["Ann", "'=cmd", "fine"],
    ]
