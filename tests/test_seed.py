"""`manage.py seed`: synthetic data in bulk, consistent, and more on every run."""

from django.core.management import call_command
from django.db.models import Max

from contacts.models import Contact
from conversations.management.commands.seed import phone_for
from conversations.models import Conversation, Message


def test_it_seeds_the_counts_asked_for(db):
    call_command("seed", "--contacts", "50", "--messages", "300", "--batch", "40")
    assert Contact.objects.count() == 50
    assert Conversation.objects.count() == 50
    assert Message.objects.count() == 300
    assert not Contact.objects.exclude(phone_status="valid").exists()


def test_conversations_show_their_newest_message(db):
    call_command("seed", "--contacts", "20", "--messages", "200")
    for conversation in Conversation.objects.annotate(newest=Max("messages__created_at")):
        if conversation.newest:
            assert conversation.last_message_at == conversation.newest


def test_a_second_run_adds_more_with_new_numbers(db):
    call_command("seed", "--contacts", "30", "--messages", "10")
    call_command("seed", "--contacts", "30", "--messages", "10")
    assert Contact.objects.count() == 60
    assert Contact.objects.values("phone_e164").distinct().count() == 60


def test_numbers_are_unique_and_never_the_fictional_range():
    phones = [phone_for(n) for n in range(50000)]
    assert len(set(phones)) == len(phones)
    assert not any(p[5:8] == "555" for p in phones)
