"""CSV exports that a spreadsheet opens as data (OWASP "CSV Injection").

Excel, LibreOffice and Google Sheets read a cell that starts with = + - or @ as a formula (and
some skip a leading tab or carriage return first): a contact named =HYPERLINK(...) would become a
live link in the manager's spreadsheet. Every export writes its rows through `export_rows`, which
passes each text cell through `spreadsheet_text`, the one place for the rule. Phone columns are
the exception a reader needs: an E.164 number (+16175550101) is written as it is, so the file can
be imported again; anything else in a phone column is treated as text.
"""

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def spreadsheet_text(value, *, phone=False):
    """`value` as a spreadsheet should show it: text that would start a formula gets a leading
    apostrophe, the spreadsheet's own mark for "this is text". Numbers, dates and None are
    left alone; so is an E.164 number in a phone column."""
    if not isinstance(value, str):
        return value
    if phone and E164.fullmatch(value):
        return value
    if value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def export_rows(header, rows, *, phone_columns=()):
    """The header, then every row with its cells made safe; `phone_columns` names the
    header's columns that hold phone numbers."""
    phones = {header.index(name) for name in phone_columns}
    yield [spreadsheet_text(cell) for cell in header]
    for row in rows:
        yield [spreadsheet_text(cell, phone=index in phones) for index, cell in enumerate(row)]
