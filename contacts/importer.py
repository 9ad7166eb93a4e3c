"""CSV import of members (SPEC §7): every row gets a result, and a bad file changes nothing.

`read_upload` checks the file before anything is stored (encoding, binary data, a phone column)
and raises ImportRefused with a message for the manager. `run_import` processes the stored rows
in batches, recording per row: imported, updated, invalid_number (saved, with the reason),
duplicate or duplicate_phone; it updates the progress as it goes, so a background run can show
a progress bar.

A row that would make a new contact on a number another contact already has (in the org, or
from an earlier row of the file under another member id) is a duplicate_phone: one number, one
member. The import's `on_duplicate_phone` says what happens to it: skipped (the default), put
onto that contact, or kept as a second contact; the row's reason names the other contact.
"""

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from config.celery import enqueue_on_commit
from contacts.models import Contact, ContactImport, ContactImportRow
from contacts.phones import parse_phone
from contacts.queries import forget_counts
from deliverability.models import AuditEvent

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 100_000
BATCH = 500
INLINE_ROWS = 300  # smaller files are imported during the upload request

# Header names people use, mapped to our fields (compared lowercase, without spaces/_/-).
COLUMNS = {
    "phone": {"phone", "phonenumber", "mobile", "mobilephone", "cell", "cellphone", "sms", "tel"},
    "first_name": {"firstname", "first", "givenname"},
    "last_name": {"lastname", "last", "surname", "familyname"},
    "name": {"name", "fullname"},
    "email": {"email", "emailaddress", "e-mail"},
    "external_id": {"memberid", "id", "externalid", "clientid", "customerid"},
    "kind": {"type", "kind"},
    "consent_date": {"consentdate", "consent", "optindate", "optedin", "consentedon"},
}
CONSENT_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%Y/%m/%d")


class ImportRefused(Exception):
    """The file cannot be imported; the text says why, for the manager."""


@dataclass(frozen=True)
class Upload:
    text: str
    rows: int


def _key(header):
    return "".join(ch for ch in (header or "").lower() if ch not in " _-.")


def column_map(headers):
    """{our field: column index} from the header row."""
    found = {}
    for index, header in enumerate(headers):
        key = _key(header)
        for field, names in COLUMNS.items():
            if key in {_key(n) for n in names} and field not in found:
                found[field] = index
    return found


def _csv_rows(text):
    """The rows of a CSV text whatever its line endings: LF, CR LF or a classic Mac's CR alone
    (newline="" hands the line endings to the csv module, as its documentation asks)."""
    return csv.reader(io.StringIO(text, newline=""))


def read_upload(uploaded):
    """Decode and check an uploaded file; nothing is stored when it is refused."""
    if uploaded is None:
        raise ImportRefused("Choose a CSV file to upload.")
    if uploaded.size > MAX_BYTES:
        raise ImportRefused("The file is larger than 10 MB: split it into several files.")
    data = uploaded.read()
    # Anywhere in the file, not only near the top: PostgreSQL cannot store a NUL in text, and
    # a spreadsheet's export never writes one.
    nul = data.find(b"\x00")
    if nul >= 0:
        line = len(data[: nul + 1].splitlines())
        raise ImportRefused(
            f"This is not a CSV text file (it contains binary data, on line {line:,}). Export "
            "it as CSV from your spreadsheet and try again."
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused(
            "The file is not UTF-8 text. In your spreadsheet choose “CSV UTF-8” when saving, "
            "then upload it again."
        ) from exc
    try:
        reader = _csv_rows(text)
        headers = next(reader, None)
        rows = sum(1 for _ in reader)
    except csv.Error as exc:
        raise ImportRefused(f"The file could not be read as CSV: {exc}.") from exc
    if not headers or not any(h.strip() for h in headers):
        raise ImportRefused("The file is empty: the first line must name the columns.")
    if "phone" not in column_map(headers):
        raise ImportRefused(
            "No phone column found. The first line must name the columns, with one called "
            "“phone” (or mobile, cell); first_name, last_name, email and member_id are optional."
        )
    if rows == 0:
        raise ImportRefused("The file has a header but no rows to import.")
    if rows > MAX_ROWS:
        raise ImportRefused(f"The file has {rows:,} rows; import at most {MAX_ROWS:,} at a time.")
    return Upload(text=text, rows=rows)


def create_import(*, org, user, filename, upload, on_duplicate_phone=None):
    return ContactImport.objects.create(
        organization=org,
        created_by=user,
        filename=filename[:255],
        content=upload.text,
        total_rows=upload.rows,
        on_duplicate_phone=on_duplicate_phone or ContactImport.OnDuplicatePhone.SKIP,
    )


def _cell(row, columns, field):
    index = columns.get(field)
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def _names(row, columns):
    first, last = _cell(row, columns, "first_name"), _cell(row, columns, "last_name")
    if not first and not last and "name" in columns:
        first, _, last = _cell(row, columns, "name").partition(" ")
    return first[:100], last[:100]


def run_import(import_id):
    """Process a stored import in batches; safe to call again (it resumes where it stopped)."""
    job = ContactImport.objects.select_related("organization").get(pk=import_id)
    if job.state == ContactImport.State.DONE:
        return job
    org = job.organization
    ContactImport.objects.filter(pk=job.pk).update(state=ContactImport.State.RUNNING)
    reader = _csv_rows(job.content)
    columns = column_map(next(reader))
    done_lines = set(job.rows.values_list("line", flat=True))
    # {number: the earlier line of this file that holds it}
    seen_phones = dict(
        job.rows.exclude(contact=None).order_by("-line").values_list("contact__phone_e164", "line")
    )
    batch = []
    for line, row in enumerate(reader, start=2):
        if line in done_lines:
            continue
        batch.append((line, row))
        if len(batch) >= BATCH:
            _import_batch(job, org, columns, batch, seen_phones)
            batch = []
    if batch:
        _import_batch(job, org, columns, batch, seen_phones)
    counts = dict(
        job.rows.order_by()
        .values_list("outcome")
        .annotate(n=Count("id"))
        .values_list("outcome", "n")
    )
    ContactImport.objects.filter(pk=job.pk).update(
        state=ContactImport.State.DONE,
        counts=counts,
        content="",
        processed_rows=job.total_rows,
        finished_at=timezone.now(),
    )
    job.refresh_from_db()
    return job


@transaction.atomic
def _import_batch(job, org, columns, batch, seen_phones):
    """One batch of rows: a few queries for the batch, never one per row for lookups."""
    Outcome = ContactImportRow.Outcome
    parsed = []
    for line, row in batch:
        raw = _cell(row, columns, "phone")
        parsed.append((line, row, parse_phone(raw, org.default_region)))
    phones = {p.e164 for _, _, p in parsed if p.e164}
    external_ids = {_cell(r, columns, "external_id") for _, r, _ in parsed} - {""}
    matches = Q(phone_e164__in=phones) | Q(external_id__in=external_ids)
    existing = (
        Contact.objects.filter(organization=org)
        .filter(matches)
        .annotate(first_lower=Lower("first_name"), last_lower=Lower("last_name"))
    )
    by_external = {c.external_id: c for c in existing if c.external_id in external_ids}
    by_phone_name = {
        (c.phone_e164, c.first_lower, c.last_lower): c for c in existing if c.phone_e164
    }
    by_phone = {}  # the contact that has each number: the lowest id first
    for c in sorted(existing, key=lambda c: c.pk):
        if c.phone_e164:
            by_phone.setdefault(c.phone_e164, c)
    results, new_phones, phone_changes = [], [], []
    for line, row, phone in parsed:
        first, last = _names(row, columns)
        external_id = _cell(row, columns, "external_id")[:64]
        email = _cell(row, columns, "email")[:254]
        name = f"{first} {last}".strip()
        result = ContactImportRow(
            contact_import=job, line=line, phone_raw=phone.raw, name=name[:201]
        )
        key = (phone.e164, first.lower(), last.lower())
        if phone.e164 and phone.e164 in seen_phones and not external_id:
            result.outcome, result.reason = Outcome.DUPLICATE, "Same number as an earlier row"
            results.append(result)
            continue
        contact = by_external.get(external_id) if external_id else by_phone_name.get(key)
        holder = by_phone.get(phone.e164) if contact is None and phone.e164 else None
        if holder is not None:
            result.outcome = Outcome.DUPLICATE_PHONE
            result.reason = _same_phone(holder, seen_phones.get(phone.e164))
            if job.on_duplicate_phone == ContactImport.OnDuplicatePhone.SKIP:
                result.reason += "; row skipped"
                results.append(result)
                continue
            if job.on_duplicate_phone == ContactImport.OnDuplicatePhone.UPDATE:
                contact = holder
                result.reason += "; updated that contact"
                # A member id already on the contact stays: it is how later imports find it.
                external_id = contact.external_id or external_id
            else:
                result.reason += "; kept both"
        created = contact is None
        if created:
            contact = Contact(organization=org)
        contact.first_name, contact.last_name = (
            first or contact.first_name,
            last or contact.last_name,
        )
        contact.email = email or contact.email
        contact.external_id = external_id or contact.external_id
        kind = _cell(row, columns, "kind").lower()
        if kind in Contact.Kind.values:
            contact.kind = kind
        old_raw, old_e164 = contact.phone_raw, contact.phone_e164
        contact.set_phone(phone.raw)
        consent, problem = consent_date(_cell(row, columns, "consent_date"))
        if consent is not None:
            contact.consent_date, contact.consent_date_estimated = consent, False
        elif created:
            # Nobody recorded when they agreed: the day they were added, marked as a guess.
            contact.consent_date, contact.consent_date_estimated = timezone.localdate(), True
        elif old_e164 != contact.phone_e164:
            contact.consent_date, contact.consent_date_estimated = timezone.localdate(), False
        if problem:
            result.reason = "; ".join(filter(None, [result.reason, problem]))[:300]
        contact.save()
        if not created and old_e164 != contact.phone_e164:
            # The member's number changed by their member id: audited like an edit by hand.
            phone_changes.append(
                AuditEvent.phone_changed(
                    contact,
                    old_raw=old_raw,
                    old_e164=old_e164,
                    by=job.created_by,
                    note=f"CSV import {job.filename}, line {line}"[:300],
                    source_page="import",
                )
            )
        # Later rows of the same batch must find the contacts this one made.
        if contact.external_id:
            by_external[contact.external_id] = contact
        by_phone_name[
            (contact.phone_e164, contact.first_name.lower(), contact.last_name.lower())
        ] = contact
        if phone.e164:
            seen_phones.setdefault(phone.e164, line)
            by_phone.setdefault(phone.e164, contact)
            if created or old_e164 != phone.e164:
                new_phones.append(phone.e164)
        result.contact = contact
        if not phone.is_valid:
            result.outcome, result.reason = Outcome.INVALID_NUMBER, phone.error
        elif holder is None:
            result.outcome = Outcome.IMPORTED if created else Outcome.UPDATED
        results.append(result)
    ContactImportRow.objects.bulk_create(results)
    AuditEvent.objects.bulk_create(phone_changes)
    ContactImport.objects.filter(pk=job.pk).update(processed_rows=job.rows.count())
    forget_counts(org.pk)  # new contacts, and numbers that may carry a flag
    if new_phones:
        phones = sorted(set(new_phones))
        pending = F("lookups_total") + len(phones)
        ContactImport.objects.filter(pk=job.pk).update(lookups_total=pending)
        enqueue_on_commit(
            "deliverability.tasks.lookup_numbers", phones, import_id=job.pk, org_id=org.pk
        )


def consent_date(text):
    """(date, "") from a consent_date cell, (None, "") when empty, (None, why) when it cannot
    be read or lies in the future (the row is imported all the same, without it)."""
    text = (text or "").strip()
    if not text:
        return None, ""
    for fmt in CONSENT_DATE_FORMATS:
        try:
            day = datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if day > timezone.localdate():
            return None, f"Consent date {text[:20]} is in the future; not used"
        return day, ""
    return None, f"Consent date {text[:20]!r} not understood (use YYYY-MM-DD); not used"


def _same_phone(holder, line):
    """The reason of a duplicate_phone row: whose number it is ("Matches Chloe Allen")."""
    who = holder.name or holder.phone_display
    if line is not None:
        return f"Same phone as line {line} ({who})"[:260]
    return f"Matches {who}"[:260]
