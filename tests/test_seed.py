"""`manage.py seed`: synthetic data in bulk, consistent, and more on every run."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Max, OuterRef, Subquery

from contacts.models import Contact, Organization
from contacts.phones import parse_phone
from conversations.management.commands.seed import phone_for
from conversations.models import Conversation, Message, Sender
from deliverability import catalogue
from deliverability.models import NumberFacts, NumberState


def seed(*args):
    out = StringIO()
    call_command("seed", *args, stdout=out)
    return out.getvalue()


def assert_conversations_show_their_newest_message():
    newest = Message.objects.filter(conversation=OuterRef("pk")).order_by("-created_at")
    conversations = Conversation.objects.annotate(
        newest_at=Max("messages__created_at"),
        newest_body=Subquery(newest.values("body")[:1]),
        newest_direction=Subquery(newest.values("direction")[:1]),
    )
    for conversation in conversations:
        if conversation.newest_at:
            assert conversation.last_message_at == conversation.newest_at
            assert conversation.last_message_preview == conversation.newest_body[:160]
            assert conversation.last_message_direction == conversation.newest_direction
        else:
            assert conversation.last_message_preview == ""


def test_it_seeds_the_counts_asked_for_into_bench_club(db):
    out = seed("--contacts", "120", "--messages", "700", "--batch", "50")
    org = Organization.objects.get(slug="bench-club")
    assert org.name == "Bench Club"
    assert Sender.objects.filter(organization=org).count() == 2
    assert Contact.objects.filter(organization=org).count() == 120
    assert Conversation.objects.filter(organization=org).count() == 120
    assert Message.objects.filter(organization=org).count() == 700
    assert "rows/s" in out


def test_contacts_have_names_and_valid_numbers_as_entered(db):
    seed("--contacts", "200", "--messages", "0")
    for contact in Contact.objects.all():
        assert contact.first_name and contact.last_name
        assert contact.phone_status == Contact.PhoneStatus.VALID
        parsed = parse_phone(contact.phone_raw)
        assert parsed.is_valid and parsed.e164 == contact.phone_e164
    assert Contact.objects.values("first_name", "last_name").distinct().count() > 150
    assert Contact.objects.values("phone_e164").distinct().count() > 190


def test_conversations_show_their_newest_message(db):
    seed("--contacts", "40", "--messages", "400")
    assert_conversations_show_their_newest_message()


def test_messages_have_a_realistic_mix_of_outcomes(db):
    seed("--contacts", "400", "--messages", "3000")
    by_status = dict(Message.objects.values_list("status").annotate(n=Count("id")))
    assert by_status["delivered"] > 0.6 * 3000
    assert {"sent", "undelivered", "failed", "skipped", "received"} <= set(by_status)
    failed = Message.objects.filter(status__in=["failed", "undelivered"])
    assert not failed.filter(error_code=None).exists()
    for code, reason in failed.values_list("error_code", "error_message").distinct():
        assert code in catalogue.ERRORS
        assert reason == catalogue.describe(code).reason
    skipped = Message.objects.filter(status="skipped")
    assert not skipped.filter(skip_reason="").exists()
    assert not Message.objects.exclude(status="skipped").exclude(skip_reason="").exists()
    inbound = Message.objects.filter(direction="inbound")
    assert not inbound.exclude(status="received").exists()
    senders = set(Sender.objects.values_list("phone_number", flat=True))
    assert set(inbound.values_list("to_number", flat=True)) <= senders


def test_numbers_get_realistic_states_and_facts(db):
    seed("--contacts", "2000", "--messages", "0")
    states = NumberState.objects.all()
    opted_out = states.exclude(opt_out_reason="")
    assert 20 <= opted_out.count() <= 200
    assert not opted_out.filter(opted_out_at=None).exists()
    invalid = states.exclude(invalid_source="")
    assert invalid.filter(invalid_source="manual").exists()
    automatic = invalid.filter(invalid_source="automatic")
    assert automatic.exists()
    assert not automatic.filter(invalid_code="").exists()
    assert not automatic.filter(invalid_reason="").exists()
    assert states.exclude(paused_until=None).exists()
    assert NumberFacts.objects.filter(line_type="landline").exists()
    assert NumberFacts.objects.filter(line_type="mobile").count() > 300
    phones = set(Contact.objects.values_list("phone_e164", flat=True))
    assert set(states.values_list("phone", flat=True)) <= phones


def test_a_second_run_adds_more_with_new_numbers(db):
    seed("--contacts", "300", "--messages", "100")
    first = set(Contact.objects.values_list("phone_e164", flat=True))
    seed("--contacts", "300", "--messages", "100")
    assert Contact.objects.count() == 600
    assert Conversation.objects.count() == 600
    assert Message.objects.count() == 200
    assert Sender.objects.count() == 2
    second = set(Contact.objects.values_list("phone_e164", flat=True)) - first
    # Only the few numbers of the simulator's 555-01NN plan can come back.
    assert len(second) > 0.9 * 300
    assert_conversations_show_their_newest_message()


def test_messages_alone_go_to_the_existing_contacts(db):
    seed("--contacts", "30", "--messages", "0")
    seed("--contacts", "0", "--messages", "90")
    assert Contact.objects.count() == 30
    assert Message.objects.count() == 90
    assert_conversations_show_their_newest_message()


def test_the_same_seed_gives_the_same_data(db):
    seed("--contacts", "50", "--messages", "100", "--org", "one", "--seed", "7")
    seed("--contacts", "50", "--messages", "100", "--org", "two", "--seed", "7")

    def names(slug):
        return list(
            Contact.objects.filter(organization__slug=slug)
            .order_by("id")
            .values_list("first_name", "last_name", "kind")
        )

    def outcomes(slug):
        return sorted(
            Message.objects.filter(organization__slug=slug).values_list(
                "status", "error_code", "skip_reason", "body"
            ),
            key=str,
        )

    assert names("one") == names("two")
    assert outcomes("one") == outcomes("two")


def test_it_refuses_messages_without_contacts(db):
    with pytest.raises(CommandError):
        seed("--contacts", "0", "--messages", "10", "--org", "empty")


def test_ordinary_numbers_are_unique_valid_and_outside_the_fictional_range():
    phones = [phone_for(n) for n in range(50_000)]
    assert len(set(phones)) == len(phones)
    assert not any(p[5:8] == "555" for p in phones)
    assert all(parse_phone(p).is_valid for p in phones[:2000])


@pytest.mark.postgres
def test_it_seeds_through_copy_on_postgresql(db):
    seed("--contacts", "500", "--messages", "3000", "--batch", "700")
    assert Contact.objects.count() == 500
    assert Conversation.objects.count() == 500
    assert Message.objects.count() == 3000
    assert NumberState.objects.exists() and NumberFacts.objects.exists()
    # Ids came from the tables' sequences: Django's own inserts continue after them.
    org = Organization.objects.get(slug="bench-club")
    contact = Contact.objects.create(organization=org, first_name="After")
    assert contact.pk > Contact.objects.exclude(pk=contact.pk).aggregate(Max("pk"))["pk__max"]
    assert_conversations_show_their_newest_message()
    seed("--contacts", "100", "--messages", "100", "--batch", "700")
    assert Message.objects.count() == 3100
