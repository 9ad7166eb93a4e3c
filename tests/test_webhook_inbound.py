"""POST /webhooks/twilio/inbound/: incoming messages and their keywords (SPEC §3, §6).

Requests are replayed as Twilio sends them: form-encoded and signed with
RequestValidator.compute_signature over PUBLIC_BASE_URL + path and every parameter.
"""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import Contact
from conversations import events, sending
from conversations import inbound as inbound_rules
from conversations.backends import get_backend
from conversations.models import Conversation, Message, MessageEvent
from deliverability.models import (
    AuditEvent,
    NumberFacts,
    NumberState,
    OptOutReason,
    OrgAlert,
    ReviewItem,
)
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
    NumberState.objects.of(org=org, phone=THEIR_NUMBER).opt_out(reason=reason, cause="test setup")


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
    caplog.set_level(logging.INFO, logger="conversations.inbound")

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


# Replies: opt-out, opt-in, help, review (SPEC §3) -------------------------------------------


def outbound():
    return Message.objects.filter(direction=Message.Direction.OUTBOUND)


def sent_bodies():
    return [sent["body"] for sent in get_backend("locmem").outbox]


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        " stop. ",
        "Stop",
        "unsubscribe",
        "QUIT!",
        "optout",
        "STOP ALL",
        "stop please",
        "STOP\u3000",
        "\u2003STOP",
        "STOP\x0b",
        "STOP\x0c",
        "STOP\u2028",
        "STOP\x85",
        "take me off your list",
        "stpo",
        "no más mensajes",
        "ALTO",
    ],
)
def test_an_opt_out_reply_opts_out_at_once(client, org, contact, body):
    inbound(client, body)

    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD
    audit = AuditEvent.objects.get(action=AuditEvent.Action.OPT_OUT)
    assert audit.organization == org
    assert audit.phone == THEIR_NUMBER
    assert audit.contact == contact
    assert audit.actor is None
    assert audit.system_cause.startswith("inbound reply")
    assert audit.after["opt_out_reason"] == OptOutReason.STOP_KEYWORD


@pytest.mark.parametrize(
    "body", ["stop by at 5?", "cancel my 3pm appointment", "end of the month works"]
)
def test_a_look_alike_is_neither_an_opt_out_nor_a_review(client, org, contact, body):
    inbound(client, body)

    assert opted_out_reason(org) == ""
    assert not ReviewItem.objects.exists()
    assert Message.objects.get().body == body


@pytest.mark.parametrize("body", ["START", "yes", " Unstop ", "Start please", "Yes 👍"])
@pytest.mark.parametrize(
    "reason",
    [OptOutReason.STOP_KEYWORD, OptOutReason.CARRIER_STOP, OptOutReason.DEACTIVATED],
)
def test_an_opt_in_keyword_lifts_the_opt_out(client, org, contact, body, reason):
    opt_out(org, reason)

    inbound(client, body)

    assert opted_out_reason(org) == ""
    assert AuditEvent.objects.filter(action=AuditEvent.Action.OPT_IN, phone=THEIR_NUMBER).exists()


def test_a_misspelt_opt_in_keyword_lifts_nothing(client, org, contact):
    opt_out(org, OptOutReason.STOP_KEYWORD)

    inbound(client, "strat")

    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD


def test_wrong_number_opts_out_under_its_own_reason_and_only_start_lifts_it(
    client, org, owner, contact
):
    org.any_inbound_resubscribes = True
    org.save()

    inbound(client, "Sorry, wrong number")
    assert opted_out_reason(org) == OptOutReason.WRONG_NUMBER
    client.force_login(owner)
    page = client.get(contact.get_absolute_url())
    assert "Wrong number — ask the member for a current number" in page.content.decode()

    inbound(client, "YES")
    inbound(client, "ok see you then")
    assert opted_out_reason(org) == OptOutReason.WRONG_NUMBER

    inbound(client, "START")
    assert opted_out_reason(org) == ""


@pytest.mark.parametrize("body", ["please text me again", "Sí", "Oops, didn't mean to unsubscribe"])
def test_resubscribe_wording_waits_for_staff_and_the_number_stays_opted_out(
    client, org, contact, body
):
    opt_out(org, OptOutReason.STOP_KEYWORD)

    inbound(client, body)

    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD
    item = ReviewItem.objects.get()
    assert item.kind == ReviewItem.Kind.RESUBSCRIBE
    assert item.is_pending


def test_resubscribe_wording_from_a_subscribed_number_queues_nothing(client, org, contact):
    inbound(client, "please text me again")

    assert not ReviewItem.objects.exists()


def test_an_unclear_reply_goes_to_review_with_its_rule_and_a_deadline(client, org, contact):
    inbound(client, "I want to cancel my membership")

    assert opted_out_reason(org) == ""
    item = ReviewItem.objects.get()
    message = Message.objects.get()
    assert item.kind == ReviewItem.Kind.OPT_OUT
    assert item.rule == "mentions_stop"
    assert item.inbound_message_id == message.pk
    assert item.received_at == message.created_at
    assert item.due_at > item.received_at + timedelta(days=13)  # 10 business days
    assert item.contact == contact


@pytest.mark.parametrize("body", ["HELP", "info", "AYUDA"])
def test_help_gets_the_orgs_help_reply(
    client, org, contact, django_capture_on_commit_callbacks, body
):
    org.help_reply = "Riverside Test Club: call 555-0100. Reply STOP to opt out."
    org.save()

    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, body)

    reply = outbound().get()
    assert reply.body == org.help_reply
    assert reply.to_number == THEIR_NUMBER
    assert reply.auto_reply == Message.AutoReply.HELP
    outbox = get_backend("locmem").outbox
    assert [(sent["to"], sent["from"], sent["body"]) for sent in outbox] == [
        (THEIR_NUMBER, OUR_NUMBER, org.help_reply)
    ]


def test_the_help_reply_goes_out_to_an_opted_out_or_paused_number(
    client, org, owner, contact, django_capture_on_commit_callbacks
):
    opt_out(org, OptOutReason.STOP_KEYWORD)

    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, "HELP")

    assert sent_bodies() == [org.help_reply]


# The one opt-out confirmation ----------------------------------------------------------------


def test_an_automatic_opt_out_gets_one_confirmation(
    client, org, contact, django_capture_on_commit_callbacks
):
    org.opt_out_confirmation = "Riverside: you're unsubscribed. Reply START to resubscribe."
    org.save()

    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, "STOP ALL", MessageSid="SM" + "1" * 32)
    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, "stop", MessageSid="SM" + "2" * 32)

    assert sent_bodies() == [org.opt_out_confirmation]
    confirmation = outbound().get()
    assert confirmation.auto_reply == Message.AutoReply.OPT_OUT_CONFIRMATION
    assert confirmation.status != Message.Status.SKIPPED


def test_no_confirmation_when_twilio_advanced_opt_out_already_answered(
    client, org, contact, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, "STOP", OptOutType="STOP")

    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD
    assert not outbound().exists()


@pytest.mark.parametrize(
    "reason", [OptOutReason.CARRIER_STOP, OptOutReason.STAFF, OptOutReason.DEACTIVATED]
)
def test_no_confirmation_when_the_number_was_already_opted_out(
    client, org, owner, contact, django_capture_on_commit_callbacks, reason
):
    NumberState.objects.of(org=org, phone=THEIR_NUMBER).opt_out(
        reason=reason, by=owner if reason == "staff" else None
    )

    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, "STOP")

    assert opted_out_reason(org) == reason
    assert not outbound().exists()


def test_no_confirmation_for_a_review_or_when_the_org_has_none(
    client, org, contact, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, "I want to cancel my membership", MessageSid="SM" + "3" * 32)
    org.opt_out_confirmation = ""
    org.save()
    with django_capture_on_commit_callbacks(execute=True):
        inbound(client, "STOP", MessageSid="SM" + "4" * 32)

    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD
    assert not outbound().exists()


def test_a_confirmation_is_held_back_by_a_carrier_stop_or_the_invalid_flag(org, contact, sender):
    from conversations.sending import message_send

    for setup in ("carrier", "invalid"):
        NumberState.objects.all().delete()
        if setup == "carrier":
            opt_out(org, OptOutReason.CARRIER_STOP)
        else:
            NumberState.objects.of(org=org, phone=THEIR_NUMBER).flag_automatically(
                code=21614, reason="Landline", cause="test"
            )
        message = sending.message_create_outbound(
            org=org,
            contact=contact,
            body="You're unsubscribed.",
            auto_reply=Message.AutoReply.OPT_OUT_CONFIRMATION,
        )
        message_send(message.pk)
        message.refresh_from_db()
        assert message.status == Message.Status.SKIPPED
    assert get_backend("locmem").outbox == []


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

    assert not outbound().exists()
    assert get_backend("locmem").outbox == []
    assert Message.objects.get().body == "HELP"


@pytest.mark.parametrize("body", ["START", "HELP", "Hello"])
def test_an_inbound_from_an_invalid_number_is_stored_blocked_and_not_acted_on(
    client, org, owner, contact, django_capture_on_commit_callbacks, body
):
    NumberState.objects.of(org=org, phone=THEIR_NUMBER).mark_invalid(by=owner)
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
    assert not outbound().exists()
    assert state_of(org).opt_out_reason == was_opted_out


@pytest.mark.parametrize("body", [" Stop. ", "STOP ALL", "no more texts"])
def test_a_stop_from_an_invalid_number_is_blocked_but_still_honoured_without_a_reply(
    client, org, owner, contact, django_capture_on_commit_callbacks, body
):
    # Clearing the flag later must never text someone who said STOP.
    NumberState.objects.of(org=org, phone=THEIR_NUMBER).mark_invalid(by=owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = inbound(client, body)

    assert response.status_code == 200
    assert Message.objects.get(direction=Message.Direction.INBOUND).blocked
    assert state_of(org).opt_out_reason == OptOutReason.STOP_KEYWORD
    assert not outbound().exists()


def test_an_unclear_reply_from_an_invalid_number_is_queued_but_a_resubscribe_is_not(
    client, org, owner, contact
):
    NumberState.objects.of(org=org, phone=THEIR_NUMBER).mark_invalid(by=owner)

    inbound(client, "I want to cancel my membership", MessageSid="SM" + "5" * 32)
    opt_out(org, OptOutReason.STOP_KEYWORD)
    inbound(client, "please text me again", MessageSid="SM" + "6" * 32)

    assert list(ReviewItem.objects.values_list("kind", flat=True)) == ["opt_out"]
    assert state_of(org).opt_out_reason == OptOutReason.STOP_KEYWORD


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


def test_an_inbound_to_a_messaging_service_number_goes_to_the_services_org(client, org):
    service = make_sender(org, phone_number="", messaging_service_sid="MG" + "b" * 32)

    inbound(client, "STOP", to="+14155550177", MessagingServiceSid=service.messaging_service_sid)

    message = Message.objects.get(direction=Message.Direction.INBOUND)
    assert message.organization == org
    assert message.sender == service
    assert opted_out_reason(org) == OptOutReason.STOP_KEYWORD
    assert outbound().get().sender == service  # the confirmation answers from the service


# One bad event ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_inbound_that_fails_to_process_is_retried_and_holds_back_only_its_number(
    client, monkeypatch
):
    # Real commits here: a broken event must not fail the commit of another.
    org = make_org()
    make_sender(org, phone_number=OUR_NUMBER)
    act_on_keywords = inbound_rules._act_on_keywords

    def fails_on_boom(org, contact, sender, message, opt_out_type):
        if message.body == "boom":
            raise RuntimeError("processing failed")
        return act_on_keywords(org, contact, sender, message, opt_out_type)

    monkeypatch.setattr(inbound_rules, "_act_on_keywords", fails_on_boom)

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
