"""POST /webhooks/twilio/inbound/: incoming messages and their keywords (SPEC §3, §6).

Requests are replayed as Twilio sends them: form-encoded and signed with
RequestValidator.compute_signature over PUBLIC_BASE_URL + path and every parameter.
"""

import logging

import pytest
from django.utils import timezone

from contacts.models import Contact
from conversations import events
from conversations import services as conversation_services
from conversations.backends import get_backend
from conversations.models import Conversation, Message, MessageEvent
from deliverability import services
from deliverability.models import AuditEvent, NumberFacts, NumberState, OptOutReason, OrgAlert
from tests.factories import make_contact, make_org, make_sender
from tests.twilio_requests import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INBOUND_PATH,
    PUBLIC_BASE_URL,
    inbound_params,
    post_form,
    post_signed,
)

OUR_NUMBER = "+14155550100"
THEIR_NUMBER = "+12125550123"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@pytest.fixture(autouse=True)
def _twilio_settings(settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_WEBHOOK_SIGNING_KEY = ""
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL


@pytest.fixture
def sender(org):
    return make_sender(org, phone_number=OUR_NUMBER)


@pytest.fixture
def contact(org, sender):
    return make_contact(org, THEIR_NUMBER)


def inbound(client, body, *, from_=THEIR_NUMBER, to=OUR_NUMBER, **extra):
    params = inbound_params(to=to, from_=from_, body=body, **extra)
    return post_signed(client, INBOUND_PATH, params)


def state_of(org, phone=THEIR_NUMBER):
    return NumberState.objects.filter(organization=org, phone=phone).first()


def opted_out_reason(org, phone=THEIR_NUMBER):
    state = state_of(org, phone)
    return state.opt_out_reason if state else ""


def opt_out(org, reason):
    services.number_opt_out(org=org, phone=THEIR_NUMBER, reason=reason, cause="test setup")


# Storing and routing --------------------------------------------------------------------------


def test_it_answers_empty_twiml_and_stores_the_message(client, org, contact):
    response = inbound(client, "See you at 6", MessageSid="SM" + "a" * 32)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert response.content.decode() == EMPTY_TWIML
    message = Message.objects.get()
    assert message.direction == Message.Direction.INBOUND
    assert message.organization == org
    assert message.conversation.contact == contact
    assert message.body == "See you at 6"
    assert message.status == Message.Status.RECEIVED
    assert message.from_number == THEIR_NUMBER
    assert message.to_number == OUR_NUMBER
    assert message.provider_sid == "SM" + "a" * 32
    assert not message.blocked


def test_it_routes_to_the_org_that_owns_the_to_number(client, org, other_org, contact):
    make_sender(other_org, phone_number="+14155550199")
    theirs = make_contact(other_org, THEIR_NUMBER)

    inbound(client, "Running late", to="+14155550199")

    message = Message.objects.get()
    assert message.organization == other_org
    assert message.conversation.contact == theirs
    assert not Message.objects.filter(organization=org).exists()


def test_a_message_to_a_number_we_do_not_have_gets_a_2xx_and_is_logged(client, db, caplog):
    caplog.set_level(logging.INFO, logger="conversations.services")

    response = inbound(client, "Hello?", to="+14155550999")

    assert response.status_code == 200
    assert not Message.objects.exists()
    assert MessageEvent.objects.get().outcome == "unknown recipient number"
    assert any("none of our senders" in record.getMessage() for record in caplog.records)


def test_a_new_number_becomes_a_lead(client, org, sender):
    inbound(client, "Do you have a day pass?", from_="+13125550142")

    lead = Contact.objects.get(organization=org)
    assert lead.kind == Contact.Kind.LEAD
    assert lead.phone_e164 == "+13125550142"
    assert Message.objects.get().conversation.contact == lead


def test_a_retried_inbound_is_stored_once(client, contact):
    params = inbound_params(to=OUR_NUMBER, from_=THEIR_NUMBER, body="Hi")

    first = post_signed(client, INBOUND_PATH, params)
    again = post_signed(client, INBOUND_PATH, params)

    assert first.status_code == again.status_code == 200
    assert Message.objects.count() == 1
    assert MessageEvent.objects.count() == 1


def test_it_rejects_an_unsigned_inbound(client, contact):
    params = inbound_params(to=OUR_NUMBER, from_=THEIR_NUMBER, body="STOP")

    response = post_form(client, INBOUND_PATH, params)

    assert response.status_code == 403
    assert not Message.objects.exists()
    assert not MessageEvent.objects.exists()
    assert opted_out_reason(contact.organization) == ""


@pytest.mark.parametrize(
    "body",
    ["", "👍", "STOP by the desk", "x" * 1600, "¿Mañana a las 8?", "<Response>hi</Response>"],
)
def test_every_inbound_is_stored_whatever_it_says(client, contact, body):
    response = inbound(client, body)

    assert response.status_code == 200
    assert Message.objects.get().body == body


def test_it_updates_the_conversation_unread_count_and_preview(client, contact):
    inbound(client, "First")
    inbound(client, "Second one")

    conversation = Conversation.objects.get(contact=contact)
    assert conversation.unread_count == 2
    assert conversation.last_message_preview == "Second one"
    assert conversation.last_message_direction == Message.Direction.INBOUND


def test_an_inbound_is_a_heartbeat(client, contact):
    before = timezone.now()

    inbound(client, "Thanks!")

    facts = NumberFacts.objects.get(phone=THEIR_NUMBER)
    assert facts.last_heartbeat_at >= before
    assert facts.errors_since_heartbeat == 0


# Keywords -------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["STOP", " stop. ", "Stop", "unsubscribe", "QUIT!", "optout"])
def test_an_opt_out_keyword_opts_out(client, org, contact, body):
    inbound(client, body)

    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD
    audit = AuditEvent.objects.get(action=AuditEvent.Action.OPT_OUT)
    assert audit.organization == org
    assert audit.phone == THEIR_NUMBER
    assert audit.contact == contact
    assert audit.actor is None
    assert audit.system_cause.startswith("inbound")
    assert audit.after["opt_out_reason"] == OptOutReason.STOP_KEYWORD


@pytest.mark.parametrize("body", ["stop by at 5?", "Can I stop my membership?", "STOP IT"])
def test_a_sentence_containing_stop_does_not_opt_out(client, org, contact, body):
    inbound(client, body)

    assert opted_out_reason(org) == ""
    assert Message.objects.get().body == body


@pytest.mark.parametrize("body", ["START", "yes", " Unstop "])
@pytest.mark.parametrize(
    "reason",
    [OptOutReason.STOP_KEYWORD, OptOutReason.CARRIER_STOP, OptOutReason.DEACTIVATED],
)
def test_an_opt_in_keyword_lifts_the_opt_out(client, org, contact, body, reason):
    opt_out(org, reason)

    inbound(client, body)

    assert opted_out_reason(org) == ""
    assert AuditEvent.objects.filter(action=AuditEvent.Action.OPT_IN, phone=THEIR_NUMBER).exists()


@pytest.mark.parametrize("body", ["HELP", "info"])
def test_help_gets_the_orgs_help_reply(
    client, org, contact, django_capture_on_commit_callbacks, body
):
    org.help_reply = "Riverside Test Club: call 555-0100. Reply STOP to opt out."
    org.save()

    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, body)

    reply = Message.objects.get(direction=Message.Direction.OUTBOUND)
    assert reply.body == org.help_reply
    assert reply.to_number == THEIR_NUMBER
    outbox = get_backend("locmem").outbox
    assert [(sent["to"], sent["from"], sent["body"]) for sent in outbox] == [
        (THEIR_NUMBER, OUR_NUMBER, org.help_reply)
    ]


@pytest.mark.parametrize(
    "body, opt_out_type",
    [("STOP", "STOP"), ("ARRET", "STOP"), ("stop please", "STOP")],
)
def test_advanced_opt_out_stop_is_recorded(client, org, contact, body, opt_out_type):
    inbound(client, body, OptOutType=opt_out_type)

    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD


def test_advanced_opt_out_start_is_recorded(client, org, contact):
    opt_out(org, OptOutReason.STOP_KEYWORD)

    inbound(client, "START", OptOutType="START")

    assert opted_out_reason(org) == ""


def test_advanced_opt_out_help_sends_no_second_reply(
    client, org, contact, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, "HELP", OptOutType="HELP")

    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()
    assert get_backend("locmem").outbox == []
    assert Message.objects.get().body == "HELP"


@pytest.mark.parametrize("body", ["START", "HELP", "Hello"])
def test_an_inbound_from_an_invalid_number_is_stored_blocked_and_not_acted_on(
    client, org, owner, contact, django_capture_on_commit_callbacks, body
):
    services.number_mark_invalid(org=org, phone=THEIR_NUMBER, by=owner)
    was_opted_out = OptOutReason.STOP_KEYWORD if body == "START" else ""
    if was_opted_out:
        opt_out(org, was_opted_out)
    before = AuditEvent.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        response = inbound(client, body)

    assert response.status_code == 200
    message = Message.objects.get(direction=Message.Direction.INBOUND)
    assert message.blocked
    assert message.body == body
    assert AuditEvent.objects.count() == before
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()
    assert state_of(org).opt_out_reason == was_opted_out


def test_a_stop_from_an_invalid_number_is_blocked_but_still_honoured(
    client, org, owner, contact, django_capture_on_commit_callbacks
):
    # Clearing the flag later must never text someone who said STOP.
    services.number_mark_invalid(org=org, phone=THEIR_NUMBER, by=owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = inbound(client, " Stop. ")

    assert response.status_code == 200
    assert Message.objects.get(direction=Message.Direction.INBOUND).blocked
    assert state_of(org).opt_out_reason == OptOutReason.STOP_KEYWORD
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()


# Organization settings ------------------------------------------------------------------------


def test_any_inbound_resubscribes_lifts_a_stop_keyword_opt_out(client, org, contact):
    org.any_inbound_resubscribes = True
    org.save()
    opt_out(org, OptOutReason.STOP_KEYWORD)

    inbound(client, "See you Tuesday")

    assert opted_out_reason(org) == ""


@pytest.mark.parametrize("reason", [OptOutReason.CARRIER_STOP, OptOutReason.DEACTIVATED])
def test_any_inbound_resubscribes_does_not_lift_other_opt_outs(client, org, contact, reason):
    org.any_inbound_resubscribes = True
    org.save()
    opt_out(org, reason)

    inbound(client, "See you Tuesday")

    assert opted_out_reason(org) == reason


def test_without_the_setting_any_inbound_lifts_nothing(client, org, contact):
    opt_out(org, OptOutReason.STOP_KEYWORD)

    inbound(client, "See you Tuesday")

    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD


def test_reasonable_means_flags_a_request_for_review_instead_of_opting_out(client, org, contact):
    org.reasonable_means_opt_out = True
    org.save()

    inbound(client, "please stop texting me")

    message = Message.objects.get()
    assert message.review == Message.Review.PENDING
    assert opted_out_reason(org) == ""


def test_without_reasonable_means_a_plain_request_is_only_stored(client, org, contact):
    inbound(client, "please stop texting me")

    message = Message.objects.get()
    assert message.review == Message.Review.NONE
    assert opted_out_reason(org) == ""


def test_an_inbound_to_a_messaging_service_number_goes_to_the_services_org(client, org):
    service = make_sender(org, phone_number="", messaging_service_sid="MG" + "b" * 32)

    inbound(client, "STOP", to="+14155550177", MessagingServiceSid=service.messaging_service_sid)

    message = Message.objects.get()
    assert message.organization == org
    assert message.sender == service
    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD


# One bad event ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_inbound_that_fails_to_process_is_retried_and_holds_back_only_its_number(
    client, monkeypatch
):
    # Real commits here: a broken event must not fail the commit of another.
    org = make_org()
    make_sender(org, phone_number=OUR_NUMBER)
    act_on_keywords = conversation_services._act_on_keywords

    def fails_on_boom(org, contact, sender, message, opt_out_type):
        if message.body == "boom":
            raise RuntimeError("processing failed")
        return act_on_keywords(org, contact, sender, message, opt_out_type)

    monkeypatch.setattr(conversation_services, "_act_on_keywords", fails_on_boom)

    broken = inbound(client, "boom")
    later_same_number = inbound(client, "STOP")
    other_number = inbound(client, "STOP", from_="+12125550177")

    assert broken.status_code == later_same_number.status_code == other_number.status_code == 200
    failed_event = MessageEvent.objects.get(payload__Body="boom")
    assert failed_event.processed_at is None  # to be tried again, after a back-off
    assert failed_event.attempts == 1 and failed_event.next_attempt_at is not None
    assert failed_event.outcome == "error: RuntimeError: processing failed"
    assert failed_event.payload["From"] == THEIR_NUMBER  # Kept as it came, to look at.
    # Another number's STOP is applied; this number's later STOP waits for its turn.
    assert NumberState.objects.get(phone="+12125550177").opt_out_reason == "stop_keyword"
    assert opted_out_reason(org) == ""

    for _ in range(events.MAX_FAILED_ATTEMPTS):
        MessageEvent.objects.update(next_attempt_at=None)  # due now
        events.events_apply_pending()

    failed_event.refresh_from_db()
    assert failed_event.not_applied and failed_event.processed_at is not None
    assert failed_event.outcome == "error: RuntimeError: processing failed"
    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD
    # The org is told that a message could not be applied.
    assert OrgAlert.objects.filter(organization=org, kind="event_not_applied").exists()
