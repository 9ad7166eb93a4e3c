"""Applying stored webhook events (conversations.events): nothing lost after a 2xx.

Transient database errors postpone an event with back-off; only an event that can never apply
is given up on, visibly; duplicates are recognised from signed parameters only; bad values are
stored cleanly. The same run with two worker processes at once is test_event_concurrency.py.
"""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.db import OperationalError
from django.utils import timezone

from conversations import events
from conversations.models import Message, MessageEvent
from deliverability.models import OrgAlert
from tests.factories import make_message
from tests.twilio_requests import (
    INBOUND_PATH,
    STATUS_PATH,
    inbound_params,
    new_sid,
    post_signed,
    status_params,
    status_path,
)

OUR_NUMBER = "+14155550100"
MEMBER = "+12125550123"


@pytest.fixture(autouse=True)
def _signed(settings):
    from tests.twilio_requests import AUTH_TOKEN, PUBLIC_BASE_URL

    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL


@pytest.fixture
def message(contact, sender):
    return make_message(
        contact,
        sender,
        status=Message.Status.SENT,
        provider_sid=new_sid(),
        dispatch=Message.Dispatch.SUBMITTED,
    )


def callback(client, message, status, token=None, **extra):
    params = status_params(sid=message.provider_sid, status=status, to=message.to_number, **extra)
    headers = {"I-Twilio-Idempotency-Token": token} if token else None
    return post_signed(client, status_path(message), params, headers=headers)


def due_now():
    MessageEvent.objects.update(next_attempt_at=None)


# Transient errors: postponed, then applied once ------------------------------------------------


def test_a_deadlock_postpones_the_batch_and_it_is_applied_on_the_next_try(
    client, message, monkeypatch
):
    real = events._apply_status_batch
    calls = []

    def deadlocks_once(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise OperationalError("deadlock detected")
        return real(batch)

    monkeypatch.setattr(events, "_apply_status_batch", deadlocks_once)

    assert callback(client, message, "delivered").status_code == 204

    event = MessageEvent.objects.get()
    assert event.processed_at is None
    assert event.attempts == 1
    assert event.outcome == "retrying: OperationalError"
    assert event.next_attempt_at > timezone.now()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT

    events.events_apply_pending()  # not due yet: nothing happens
    assert len(calls) == 1
    due_now()
    events.events_apply_pending()

    event.refresh_from_db()
    message.refresh_from_db()
    assert event.processed_at is not None and not event.not_applied
    assert event.outcome == "now delivered"
    assert message.status == Message.Status.DELIVERED


def test_a_lost_connection_on_an_inbound_stop_postpones_it_and_the_stop_is_applied(
    client, org, sender, monkeypatch
):
    from conversations import inbound

    real = inbound.inbound_apply
    failures = iter([True, True, False])

    def drops(event):
        if next(failures):
            from django.db import InterfaceError

            raise InterfaceError("connection already closed")
        return real(event)

    monkeypatch.setattr(inbound, "inbound_apply", drops)

    post_signed(client, INBOUND_PATH, inbound_params(to=OUR_NUMBER, from_=MEMBER, body="STOP"))
    assert MessageEvent.objects.get().attempts == 1
    due_now()
    events.events_apply_pending()
    assert MessageEvent.objects.get().attempts == 2
    due_now()
    events.events_apply_pending()

    event = MessageEvent.objects.get()
    assert event.outcome == "opted out" and event.processed_at is not None
    from deliverability.models import NumberState

    assert NumberState.objects.get(organization=org, phone=MEMBER).opt_out_reason == "stop_keyword"


def test_a_run_the_database_stops_leaves_the_events_stored_and_asks_for_another_soon(
    client, message, monkeypatch
):
    from conversations import event_requests, tasks

    asked = []
    monkeypatch.setattr(
        event_requests, "request_event_processing", lambda delay=None: asked.append(delay)
    )
    fail = {"on": True}
    real_claim = events._claim

    def database_gone(*args):
        if fail["on"]:
            raise OperationalError("server closed the connection unexpectedly")
        return real_claim(*args)

    monkeypatch.setattr(events, "_claim", database_gone)
    assert callback(client, message, "delivered").status_code == 204
    asked.clear()

    assert tasks.process_events() == 0

    assert asked == [tasks.DATABASE_RETRY_S]  # not only the sweeper's run, 30 s later
    assert MessageEvent.objects.get().processed_at is None
    fail["on"] = False
    tasks.process_events()
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_a_postponed_status_holds_back_later_callbacks_of_the_same_message(
    client, message, contact, sender, monkeypatch
):
    other = make_message(
        contact, sender, status=Message.Status.SENT, provider_sid=new_sid(), dispatch="submitted"
    )
    real = events._apply_status_batch
    fail = {"on": True}

    def deadlocks_while_on(batch):
        if fail["on"]:
            raise OperationalError("deadlock detected")
        return real(batch)

    monkeypatch.setattr(events, "_apply_status_batch", deadlocks_while_on)
    callback(client, message, "undelivered", error_code=30003)
    fail["on"] = False
    callback(client, message, "delivered")  # arrives later: must not overtake
    callback(client, other, "delivered")  # another message: not held back

    message.refresh_from_db()
    other.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert other.status == Message.Status.DELIVERED

    due_now()
    events.events_apply_pending()
    message.refresh_from_db()
    # The first final received wins, though it was applied after a retry.
    assert message.status == Message.Status.UNDELIVERED
    outcomes = dict(MessageEvent.objects.filter(message=message).values_list("status", "outcome"))
    assert outcomes == {
        "undelivered": "now undelivered",
        "delivered": "kept undelivered (got delivered)",
    }


def test_a_stop_applied_late_never_undoes_a_later_start(client, org, sender, contact):
    from deliverability.models import NumberState

    post_signed(client, INBOUND_PATH, inbound_params(to=OUR_NUMBER, from_=MEMBER, body="START"))
    # A STOP received before the START whose processing failed at the time (requeued).
    stop = MessageEvent.objects.create(
        kind=MessageEvent.Kind.INBOUND,
        idempotency_key="inbound:SMearlier",
        provider_sid="SMearlier",
        status="received",
        payload=inbound_params(to=OUR_NUMBER, from_=MEMBER, body="STOP", sid="SMearlier"),
        attempts=1,
    )
    MessageEvent.objects.filter(pk=stop.pk).update(
        received_at=timezone.now() - timedelta(minutes=5)
    )

    events.events_apply_pending()

    stop.refresh_from_db()
    assert stop.outcome == "stored (a later reply from the number was already applied)"
    state = NumberState.objects.filter(organization=org, phone=MEMBER).first()
    assert state is None or not state.is_opted_out
    thread = list(
        contact.conversation.messages.order_by("created_at").values_list("body", flat=True)
    )
    assert list(thread) == ["STOP", "START"]  # in the order the member wrote them


def stored_inbound(body, sid, *, received_ago, **fields):
    """An inbound event from MEMBER as the webhook stores it, received `received_ago` back."""
    event = MessageEvent.objects.create(
        kind=MessageEvent.Kind.INBOUND,
        idempotency_key=f"inbound:{sid}",
        provider_sid=sid,
        status="received",
        payload=inbound_params(to=OUR_NUMBER, from_=MEMBER, body=body, sid=sid),
        **fields,
    )
    MessageEvent.objects.filter(pk=event.pk).update(received_at=timezone.now() - received_ago)
    return event


def test_a_start_postponed_once_still_follows_the_stop_received_before_it(org, sender, contact):
    """Under a backlog the STOP is applied after the START was received; the START, retried
    after a transient error, still has the last word."""
    from deliverability.models import NumberState

    stored_inbound("STOP", "SMstop", received_ago=timedelta(seconds=20))
    start = stored_inbound("START", "SMstart", received_ago=timedelta(seconds=10), attempts=1)

    events.events_apply_pending()

    start.refresh_from_db()
    assert start.outcome == "opted in"
    assert not NumberState.objects.get(organization=org, phone=MEMBER).is_opted_out


def test_a_stop_retried_from_the_admin_after_a_later_start_does_not_undo_it(
    admin_client, org, sender, contact
):
    from deliverability.models import NumberState

    stop = stored_inbound(
        "STOP",
        "SMgivenup",
        received_ago=timedelta(minutes=5),
        processed_at=timezone.now(),
        not_applied=True,
        outcome="error: ValueError: a bug since fixed",
    )
    stored_inbound("START", "SMlater", received_ago=timedelta(minutes=1))
    events.events_apply_pending()

    admin_client.post(
        "/admin/conversations/messageevent/",
        {"action": "retry", "_selected_action": [stop.pk]},
    )

    stop.refresh_from_db()
    assert stop.outcome == "stored (a later reply from the number was already applied)"
    assert not NumberState.objects.get(organization=org, phone=MEMBER).is_opted_out


# Given up on, visibly --------------------------------------------------------------------------


def test_a_status_for_an_unknown_sid_is_given_up_after_72_hours(db, client):
    post_signed(client, STATUS_PATH, status_params(sid=new_sid(), status="delivered"))
    MessageEvent.objects.update(
        received_at=timezone.now() - timedelta(hours=73), next_attempt_at=None
    )

    events.events_apply_pending()

    event = MessageEvent.objects.get()
    assert event.not_applied and event.processed_at is not None
    assert event.outcome == "unknown message (looked for 72 hours)"
    assert not OrgAlert.objects.exists()  # no org to tell


def test_an_event_given_up_on_is_retried_from_the_admin(admin_client, contact, sender):
    sid = new_sid()
    post_signed(client_for_twilio(), STATUS_PATH, status_params(sid=sid, status="delivered"))
    MessageEvent.objects.update(
        received_at=timezone.now() - timedelta(hours=73), next_attempt_at=None
    )
    events.events_apply_pending()
    event = MessageEvent.objects.get()
    assert event.not_applied

    listing = admin_client.get("/admin/conversations/messageevent/?not_applied__exact=1")
    assert listing.status_code == 200
    assert sid in listing.content.decode()

    # The message turns up after all (restored from a backup, say): Retry applies the event.
    message = make_message(contact, sender, status=Message.Status.SENT, provider_sid=sid)
    response = admin_client.post(
        "/admin/conversations/messageevent/",
        {"action": "retry", "_selected_action": [event.pk]},
        follow=True,
    )

    assert "1 event(s) queued to be applied again." in response.content.decode()
    event.refresh_from_db()
    message.refresh_from_db()
    assert not event.not_applied and event.outcome == "now delivered"
    assert message.status == Message.Status.DELIVERED


def client_for_twilio():
    from django.test import Client

    return Client()


def test_the_data_migration_requeues_events_lost_to_transient_errors(db):
    lost = MessageEvent.objects.create(
        kind="inbound",
        idempotency_key="inbound:SMlost",
        payload={"Body": "STOP"},
        processed_at=timezone.now(),
        outcome="error: OperationalError: deadlock detected",
    )
    broken = MessageEvent.objects.create(
        kind="inbound",
        idempotency_key="inbound:SMbroken",
        payload={},
        processed_at=timezone.now(),
        outcome="error: KeyError: 'x'",
    )
    migration = importlib.import_module("conversations.migrations.0007_requeue_lost_events")

    migration.requeue(django_apps, None)

    lost.refresh_from_db()
    broken.refresh_from_db()
    assert lost.processed_at is None and lost.outcome == "" and lost.attempts == 1
    assert broken.processed_at is not None


# Duplicates from signed parameters only ------------------------------------------------------


def test_a_callback_replayed_with_fresh_idempotency_tokens_is_stored_once(client, message):
    answers = [callback(client, message, "delivered", token=new_sid("T")) for _ in range(6)]

    assert {a.status_code for a in answers} == {204}
    assert MessageEvent.objects.count() == 1


def test_a_callback_with_another_error_code_is_another_event(client, message):
    callback(client, message, "undelivered", error_code=30003)
    callback(client, message, "undelivered", error_code=30005)

    assert MessageEvent.objects.count() == 2


def test_an_inbound_message_replayed_with_fresh_tokens_is_stored_once(client, org, sender):
    params = inbound_params(to=OUR_NUMBER, from_=MEMBER, body="STOP")
    for _ in range(3):
        post_signed(
            client, INBOUND_PATH, params, headers={"I-Twilio-Idempotency-Token": new_sid("T")}
        )

    assert MessageEvent.objects.count() == 1
    assert Message.objects.filter(direction="inbound").count() == 1


def test_an_inbound_message_without_message_sid_is_refused_with_400(client, org, sender):
    params = inbound_params(to=OUR_NUMBER, from_=MEMBER, body="hello")
    for key in ("MessageSid", "SmsSid", "SmsMessageSid"):
        params.pop(key)

    response = post_signed(client, INBOUND_PATH, params)

    assert response.status_code == 400
    assert not MessageEvent.objects.exists()
    # Later messages are still stored (nothing silently swallowed under an empty key).
    post_signed(client, INBOUND_PATH, inbound_params(to=OUR_NUMBER, from_=MEMBER, body="hi"))
    post_signed(client, INBOUND_PATH, inbound_params(to=OUR_NUMBER, from_=MEMBER, body="again"))
    assert MessageEvent.objects.count() == 2


# Bad input: stored cleanly, then applied or given up on visibly --------------------------------


def run_bad_input_cases(client, message):
    cases = {
        "negative code": dict(status="undelivered", error_code=-5),
        "huge code": dict(status="failed", error_code=99999999999),
    }
    for _, values in cases.items():
        response = callback(client, message, values["status"], error_code=values["error_code"])
        assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == Message.Status.UNDELIVERED
    assert message.error_code is None
    assert message.error_message == "Unknown error (code -5)"

    long_sid = "SM" + "a" * 60
    params = status_params(sid=long_sid, status="delivered")
    assert post_signed(client, STATUS_PATH, params).status_code == 204
    long_from = inbound_params(to=OUR_NUMBER, from_="+1" + "2" * 70, body="hello")
    assert post_signed(client, INBOUND_PATH, long_from).status_code == 200
    long_inbound_sid = inbound_params(to=OUR_NUMBER, from_=MEMBER, body="hi", sid="SM" + "b" * 40)
    assert post_signed(client, INBOUND_PATH, long_inbound_sid).status_code == 200
    many_segments = inbound_params(to=OUR_NUMBER, from_=MEMBER, body="Hello!", NumSegments="70000")
    assert post_signed(client, INBOUND_PATH, many_segments).status_code == 200

    assert not MessageEvent.objects.filter(processed_at=None).exists()
    outcomes = dict(MessageEvent.objects.values_list("provider_sid", "outcome"))
    given_up = dict(
        MessageEvent.objects.filter(not_applied=True).values_list("idempotency_key", "outcome")
    )
    assert sorted(given_up.values()) == [
        "malformed: From too long",
        "malformed: MessageSid too long",
        "malformed: MessageSid too long",
    ]
    assert outcomes[many_segments["MessageSid"]] == "stored"
    assert Message.objects.get(provider_sid=many_segments["MessageSid"]).segments == 1


def test_bad_values_are_stored_cleanly_and_applied_or_given_up_visibly(
    client, message, org, sender
):
    run_bad_input_cases(client, message)


@pytest.mark.postgres
def test_bad_values_never_reach_postgresql_columns_they_do_not_fit(client, message, org, sender):
    run_bad_input_cases(client, message)


def test_an_unknown_signature_algorithm_is_a_403(client, message, settings):
    settings.TWILIO_WEBHOOK_SIGNING_KEY = "shared-key"
    params = status_params(sid=message.provider_sid, status="delivered")

    response = post_signed(
        client,
        status_path(message),
        params,
        headers={"X-Twilio-Webhooks-Signature-Settings": "key=k,algorithm=MD5"},
    )

    assert response.status_code == 403
    assert not MessageEvent.objects.exists()
