"""conversations 0010: every stored inbound reply read again with the FCC 2025 rules."""

import importlib
from datetime import UTC, datetime, timedelta

import pytest

from tests import testdb

BEFORE = [
    ("conversations", "0009_message_auto_reply"),
    ("contacts", "0003_opt_out_confirmation_for_every_org"),
    ("deliverability", "0004_review_queue_and_wrong_number"),
]
AFTER = [("conversations", "0010_reclassify_inbound_replies")]
MONDAY = datetime(2026, 4, 6, 15, 0, tzinfo=UTC)


@pytest.fixture
def history(transactional_db):
    """Inbound replies stored before the new rules, in the schema of that time."""
    apps = testdb.back_to(BEFORE)
    Organization = apps.get_model("contacts", "Organization")
    Contact = apps.get_model("contacts", "Contact")
    Conversation = apps.get_model("conversations", "Conversation")
    Message = apps.get_model("conversations", "Message")
    org = Organization.objects.create(name="Old Club", slug="old-club")

    def said(phone, body, at, **fields):
        contact, _ = Contact.objects.get_or_create(
            organization=org,
            phone_e164=phone if phone.startswith("+") else "",
            phone_raw=phone,
            defaults={"phone_status": "valid" if phone.startswith("+") else "invalid_number"},
        )
        conversation, _ = Conversation.objects.get_or_create(organization=org, contact=contact)
        message = Message.objects.create(
            organization=org,
            conversation=conversation,
            direction="inbound",
            to_number="+14155550100",
            from_number=phone,
            body=body,
            status="received",
            **fields,
        )
        Message.objects.filter(pk=message.pk).update(created_at=at)
        return message

    said("+12125550101", "STOP ALL", MONDAY)
    said("+12125550102", "stop please", MONDAY)
    said("+12125550102", "START", MONDAY + timedelta(days=3))
    unclear = said("+12125550103", "I want to cancel my membership", MONDAY)
    said("+12125550104", "see you at 6", MONDAY)
    said("+12125550105", "can we talk about my plan", MONDAY, review="pending")
    said("+12125550106", "what does cancel mean here", MONDAY, review="dismissed")
    said("ACME", "STOP", MONDAY)  # an alphanumeric sender: not a number to opt out
    yield {"org_id": org.pk, "unclear_id": unclear.pk}
    testdb.migrate_to_latest()


def test_replies_read_again_opt_out_queue_send_nothing_and_a_second_run_changes_nothing(
    history,
):
    # One test: each trip back to the old schema and forward again takes seconds.
    apps = testdb.migrate(AFTER)
    NumberState = apps.get_model("deliverability", "NumberState")
    AuditEvent = apps.get_model("deliverability", "AuditEvent")
    ReviewItem = apps.get_model("deliverability", "ReviewItem")
    Message = apps.get_model("conversations", "Message")

    opted_out = dict(
        NumberState.objects.exclude(opt_out_reason="").values_list("phone", "opt_out_reason")
    )
    assert opted_out == {"+12125550101": "stop_keyword"}  # 0102 texted START afterwards
    event = AuditEvent.objects.get()
    assert (event.action, event.system_cause, event.actor_id) == ("opt_out", "re-classified", None)
    assert "STOP ALL" in event.note

    items = {item.phone: item for item in ReviewItem.objects.all()}
    assert set(items) == {"+12125550103", "+12125550105"}
    unclear = items["+12125550103"]
    assert unclear.inbound_message_id == history["unclear_id"]
    assert (unclear.kind, unclear.decision, unclear.rule) == ("opt_out", "", "mentions_stop")
    assert unclear.received_at == MONDAY
    assert unclear.due_at == MONDAY + timedelta(days=14)
    assert not Message.objects.filter(direction="outbound").exists()

    module = importlib.import_module("conversations.migrations.0010_reclassify_inbound_replies")
    module.reclassify(apps, None)
    assert ReviewItem.objects.count() == 2
    assert AuditEvent.objects.count() == 1
    assert NumberState.objects.exclude(opt_out_reason="").count() == 1
