"""A member's replies through the signed inbound webhook, to the next broadcast (SPEC §3, §5).

The replies are posted as Twilio sends them (form-encoded, signed) and processed by the same
task as in production; the broadcast and the one-to-one reply go through the locmem backend.
"""

from datetime import time, timedelta

import pytest
from django.utils import timezone

from conversations import broadcasts
from conversations.backends import get_backend
from conversations.models import Message
from deliverability import consent
from deliverability.models import AuditEvent, NumberState, OptOutReason, ReviewItem
from tests.factories import make_contact, make_sender
from tests.twilio_requests import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INBOUND_PATH,
    PUBLIC_BASE_URL,
    inbound_params,
    post_signed,
)

OUR_NUMBER = "+14155550100"
MEMBER = "+12125550123"


@pytest.fixture(autouse=True)
def _twilio_settings(settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_WEBHOOK_SIGNING_KEY = ""
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL


@pytest.fixture
def club(org):
    org.quiet_hours_start, org.quiet_hours_end = time(0, 0), time(23, 59, 59)
    org.opt_out_confirmation = "Riverside: you are unsubscribed. Reply START to resubscribe."
    org.save()
    sender = make_sender(org, phone_number=OUR_NUMBER, throughput=100)
    member = make_contact(org, MEMBER, first_name="Dana")
    others = [make_contact(org, f"+1212400{n:04d}") for n in range(3)]
    return {"org": org, "sender": sender, "member": member, "others": others}


def reply(client, body, sid, capture):
    with capture(execute=True):
        response = post_signed(
            client,
            INBOUND_PATH,
            inbound_params(to=OUR_NUMBER, from_=MEMBER, body=body, MessageSid=sid),
        )
    assert response.status_code == 200


def broadcast_to_all(club, owner, capture):
    with capture(execute=True):
        broadcast = broadcasts.broadcast_start(
            org=club["org"], sender=club["sender"], body="Pool closed Sunday", kind="all", by=owner
        )
    return dict(Message.objects.filter(broadcast=broadcast).values_list("to_number", "skip_reason"))


def sent_to_member():
    return [sent["body"] for sent in get_backend("locmem").outbox if sent["to"] == MEMBER]


def opt_out_reason(org):
    state = NumberState.objects.filter(organization=org, phone=MEMBER).first()
    return state.opt_out_reason if state else ""


def test_stop_all_opts_out_confirms_once_and_the_next_broadcast_skips_them(
    client, club, owner, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks

    reply(client, "STOP ALL", "SM" + "a" * 32, capture)
    reply(client, "STOP ALL", "SM" + "b" * 32, capture)  # asked twice: still one confirmation

    assert opt_out_reason(club["org"]) == OptOutReason.STOP_KEYWORD
    assert sent_to_member() == [club["org"].opt_out_confirmation]
    skip_reasons = broadcast_to_all(club, owner, capture)
    assert skip_reasons[MEMBER] == "opted_out"
    assert [skip_reasons[c.phone_e164] for c in club["others"]] == ["", "", ""]
    assert sent_to_member() == [club["org"].opt_out_confirmation]


def test_an_unclear_reply_waits_for_review_then_becomes_an_opt_out_at_its_deadline(
    client, club, owner, owner_client, django_capture_on_commit_callbacks
):
    capture, org = django_capture_on_commit_callbacks, club["org"]

    reply(client, "I want to cancel my membership", "SM" + "c" * 32, capture)

    item = ReviewItem.objects.get(organization=org)
    assert (item.kind, item.phone, item.is_pending) == ("opt_out", MEMBER, True)
    assert opt_out_reason(org) == ""
    assert sent_to_member() == []  # no confirmation for a reply in review
    # No broadcast while it waits ...
    assert broadcast_to_all(club, owner, capture)[MEMBER] == "pending_review"
    assert "Pool closed Sunday" not in sent_to_member()
    # ... but staff can still answer one to one.
    conversation = club["member"].conversation
    with capture(execute=True):
        owner_client.post(
            f"/conversations/{conversation.pk}/send/",
            {"body": "Sorry to hear that! Shall I call you about your membership?"},
        )
    assert sent_to_member() == ["Sorry to hear that! Shall I call you about your membership?"]

    # Nobody decided: at the deadline it becomes an opt-out, audited by "deadline".
    consent.review_deadlines_apply(now=item.due_at + timedelta(seconds=1))

    assert opt_out_reason(org) == OptOutReason.STOP_KEYWORD
    event = AuditEvent.objects.get(organization=org, action=AuditEvent.Action.OPT_OUT)
    assert (event.actor, event.system_cause) == (None, "deadline")
    assert broadcast_to_all(club, owner, capture)[MEMBER] == "opted_out"
    assert len(sent_to_member()) == 1  # still no confirmation text
    assert item.due_at - item.received_at >= timedelta(days=14)
    assert item.received_at <= timezone.now()
