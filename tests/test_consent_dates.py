"""A contact's consent date (SPEC §2): imported, the day added, a new number, a START; shown on
the contact card; existing contacts get the day they were added, marked estimated."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone

from contacts.models import Contact, ContactImport
from deliverability import lookup_packages
from deliverability.models import LookupPackages
from tests import testdb
from tests.factories import make_contact
from tests.test_contacts_pages import change_phone, upload
from tests.test_webhook_inbound import THEIR_NUMBER, inbound
from tests.test_webhook_inbound import _twilio_settings as _twilio_settings  # noqa: F401
from tests.test_webhook_inbound import sender as sender  # noqa: F401

TODAY = timezone.localdate


def test_a_new_contact_consents_the_day_it_is_added(org):
    contact = make_contact(org, "+12125550101")
    assert (contact.consent_date, contact.consent_date_estimated) == (TODAY(), False)


CSV = """first_name,last_name,phone,consent_date
Ann,Lee,212-555-0111,2024-03-05
Bob,Ray,212-555-0112,03/07/2025
Cat,Ng,212-555-0113,
Dan,Ortiz,212-555-0114,soon
Eve,Park,212-555-0115,2999-01-01
"""


def test_the_import_reads_a_consent_date_column(owner_client, org):
    upload(owner_client, CSV)
    job = ContactImport.objects.get()
    assert job.state == "done"
    got = {
        c.first_name: (c.consent_date, c.consent_date_estimated)
        for c in Contact.objects.filter(organization=org)
    }
    assert got == {
        "Ann": (date(2024, 3, 5), False),
        "Bob": (date(2025, 3, 7), False),
        # No date, or one that cannot be right: the day added, marked as a guess.
        "Cat": (TODAY(), True),
        "Dan": (TODAY(), True),
        "Eve": (TODAY(), True),
    }
    reasons = dict(job.rows.values_list("name", "reason"))
    assert reasons["Dan Ortiz"] == "Consent date 'soon' not understood (use YYYY-MM-DD); not used"
    assert reasons["Eve Park"] == "Consent date 2999-01-01 is in the future; not used"
    assert job.counts == {"imported": 5}


def test_a_new_number_consents_from_the_day_it_changed(teammate_client, org):
    contact = make_contact(
        org, "+12125550101", consent_date=date(2020, 1, 1), consent_date_estimated=True
    )
    change_phone(teammate_client, contact, "212-555-0111")
    contact.refresh_from_db()
    assert (contact.consent_date, contact.consent_date_estimated) == (TODAY(), False)


def test_the_same_number_typed_differently_keeps_its_consent_date(teammate_client, org):
    contact = make_contact(org, "+12125550101", consent_date=date(2020, 1, 1))
    change_phone(teammate_client, contact, "(212) 555-0101")
    contact.refresh_from_db()
    assert contact.consent_date == date(2020, 1, 1)


def test_start_records_consent_on_the_day_it_was_texted(client, org, sender):
    contact = make_contact(
        org, THEIR_NUMBER, consent_date=date(2020, 1, 1), consent_date_estimated=True
    )
    other = make_contact(org, "+12125550199", consent_date=date(2020, 1, 1))
    inbound(client, "START")
    contact.refresh_from_db()
    other.refresh_from_db()
    assert (contact.consent_date, contact.consent_date_estimated) == (TODAY(), False)
    assert other.consent_date == date(2020, 1, 1)


def test_the_reassigned_check_asks_about_the_start_date(client, org, sender):
    LookupPackages.objects.create(organization=org, reassigned=True)
    make_contact(org, THEIR_NUMBER, consent_date=date(2020, 1, 1))
    inbound(client, "START")
    [request] = lookup_packages.plan(org, [THEIR_NUMBER])
    assert request.last_verified == TODAY()


def test_the_contact_card_shows_the_consent_date_and_whether_it_is_a_guess(owner_client, org):
    known = make_contact(org, "+12125550101", consent_date=date(2024, 3, 5))
    guessed = make_contact(
        org, "+12125550102", consent_date=date(2023, 1, 9), consent_date_estimated=True
    )
    page = owner_client.get(known.get_absolute_url()).content.decode()
    assert "Consent given Mar 5, 2024</p>" in page
    page = owner_client.get(guessed.get_absolute_url()).content.decode()
    assert "Consent given Jan 9, 2023" in page
    assert "estimated" in page and "the day the contact was added" in page


# The data migration --------------------------------------------------------------------------

BEFORE = [("contacts", "0006_clearer_labels_and_help_texts")]
AFTER = [("contacts", "0007_contact_consent_date")]


@pytest.fixture
def old_contacts(transactional_db):
    apps = testdb.back_to(BEFORE)
    Organization = apps.get_model("contacts", "Organization")
    Contact = apps.get_model("contacts", "Contact")
    org = Organization.objects.create(name="Old Club", slug="old-club")
    added = datetime(2023, 5, 17, 15, 0, tzinfo=UTC)
    contact = Contact.objects.create(organization=org, phone_e164="+12125550101")
    Contact.objects.filter(pk=contact.pk).update(created_at=added)
    yield contact.pk
    testdb.migrate_to_latest()


def test_existing_contacts_consent_on_the_day_they_were_added_estimated(old_contacts):
    apps = testdb.migrate(AFTER)
    contact = apps.get_model("contacts", "Contact").objects.get(pk=old_contacts)
    assert contact.consent_date == date(2023, 5, 17)
    assert contact.consent_date_estimated is True


def test_an_older_consent_never_replaces_a_newer_one(org):
    contact = make_contact(org, "+12125550101", consent_date=TODAY())
    Contact.objects.filter(pk=contact.pk).record_consent(TODAY() - timedelta(days=3))
    contact.refresh_from_db()
    assert contact.consent_date == TODAY()
