"""conversations 0014: the "Sample Text" leads that Sample Texts used to create are removed,
unless something else refers to them; their test messages stay, detached, for the log."""

import importlib

from django.apps import apps

from contacts.models import Contact
from conversations.models import Message
from tests.factories import make_contact, make_message

migration = importlib.import_module("conversations.migrations.0014_remove_sample_text_leads")


def sample_text_lead(org, phone):
    """What a Sample Text to a number that was not a contact used to leave behind."""
    lead = make_contact(org, phone, first_name="Sample Text", last_name="", kind="lead")
    make_message(lead, is_test=True, body="Test of the pool notice")
    return lead


def test_a_lead_made_only_by_sample_texts_goes_and_its_message_stays(org):
    lead = sample_text_lead(org, "+12125550177")
    member = make_contact(org, "+12125550178", first_name="Chloe")
    migration.remove_sample_text_leads(apps, None)
    assert list(Contact.objects.all()) == [member]
    message = Message.objects.get(is_test=True)
    assert (message.to_number, message.conversation) == (lead.phone_e164, None)


def test_a_lead_with_a_real_conversation_stays(org, capsys):
    lead = sample_text_lead(org, "+12125550177")
    make_message(lead, direction="inbound", body="Who is this?", status="received")
    migration.remove_sample_text_leads(apps, None)
    assert Contact.objects.filter(pk=lead.pk).exists()
    assert Message.objects.get(is_test=True).conversation is not None
    assert '1 "Sample Text" lead(s) kept' in capsys.readouterr().out


def test_a_member_who_happens_to_be_called_sample_text_stays(org):
    member = make_contact(org, "+12125550177", first_name="Sample Text", external_id="M1")
    migration.remove_sample_text_leads(apps, None)
    assert Contact.objects.filter(pk=member.pk).exists()
