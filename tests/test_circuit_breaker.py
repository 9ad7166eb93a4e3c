"""The circuit breaker (SPEC §5): a broken sender stops its broadcasts at the error that shows
it; a normal list with a few spam-filtered numbers never does; a filtered text pauses that
text, not the sender.

Tasks run in the caller (TASKS_IN_PROCESS=sync): the dispatcher's sends happen inside it.
"""

from datetime import time

import pytest
from django.utils import timezone

from config import pacing
from contacts.models import Contact
from conversations import breaker, broadcasts, event_store, events, sending, tasks
from conversations.backends import SendError, get_backend
from conversations.models import Broadcast, Message, MessageEvent
from deliverability.models import OrgAlert
from tests.factories import make_sender


@pytest.fixture(autouse=True)
def _no_pacing_sleep(monkeypatch):
    """Sends keep their slots but do not sleep for them: pacing has its own tests."""
    monkeypatch.setattr(
        sending,
        "wait_for_slot",
        lambda key, rate, **options: pacing.wait_for_slot(key, rate, sleep=lambda seconds: None),
    )


@pytest.fixture
def backend():
    return get_backend("locmem")


def members(org, count):
    org.quiet_hours_start, org.quiet_hours_end = time(0, 0), time(23, 59, 59)
    org.save()
    contacts = []
    for n in range(count):
        contact = Contact(organization=org, first_name="Member", last_name=str(n))
        contact.set_phone(f"+1212400{n:04d}")
        contacts.append(contact)
    Contact.objects.bulk_create(contacts)


def answer_create(monkeypatch, backend, code_for):
    """The provider refuses the create call with `code_for(to)` (None: accepted)."""
    accept = backend.send
    calls = []

    def send(*, to, from_, body, status_callback):
        calls.append(to)
        code = code_for(to, body)
        if code is not None:
            raise SendError(f"Twilio {code}", code=code, http_status=400)
        return accept(to=to, from_=from_, body=body, status_callback=status_callback)

    monkeypatch.setattr(backend, "send", send)
    return calls


def start(org, owner, sender, body="Pool closes at 6 tonight."):
    return broadcasts.broadcast_start(
        org=org, sender=sender, body=body, kind=Broadcast.Audience.ALL, by=owner
    )


def dispatch_until_done(broadcast, rounds=20):
    for _ in range(rounds):
        broadcasts.broadcast_dispatch(broadcast.pk)
        broadcast.refresh_from_db()
        if broadcast.state != Broadcast.State.SENDING:
            return


def test_a_list_where_two_percent_are_spam_filtered_never_trips_it(
    org, owner, backend, monkeypatch
):
    # The org counts 5 errors, not the default 20, so that a few hundred sends are enough:
    # 300 recipients, every fiftieth filtered, make 6 errors, and "5 errors in 10 minutes"
    # would have held the list after its first 250. Only the share of recent sends protects it.
    org.circuit_breaker_errors = 5
    members(org, 300)
    sender = make_sender(org, throughput=50)
    calls = answer_create(
        monkeypatch, backend, lambda to, body: 30007 if int(to[-4:]) % 50 == 7 else None
    )

    broadcast = start(org, owner, sender)
    dispatch_until_done(broadcast)

    assert broadcast.state == Broadcast.State.FINISHED
    assert len(calls) == 300
    failed = Message.objects.filter(broadcast=broadcast, error_code=30007).count()
    assert failed == 6
    sender.refresh_from_db()
    assert sender.broadcasts_paused_until is None
    assert broadcast.body_paused_until is None
    assert not OrgAlert.objects.filter(kind=OrgAlert.Kind.CIRCUIT_BREAKER).exists()


@pytest.mark.parametrize("code", [30034, 21606])
def test_a_misconfigured_sender_trips_at_its_twentieth_error_at_create(
    org, owner, backend, monkeypatch, code
):
    members(org, 60)
    sender = make_sender(org, throughput=5)
    calls = answer_create(monkeypatch, backend, lambda to, body: code)

    broadcast = start(org, owner, sender)
    broadcasts.broadcast_dispatch(broadcast.pk)

    # Sixty released at once; the twentieth error stops the rest from going out.
    assert len(calls) == 20
    messages = Message.objects.filter(broadcast=broadcast)
    assert messages.filter(status="failed", error_code=code).count() == 20
    assert messages.filter(dispatch=Message.Dispatch.HELD).count() == 40
    broadcast.refresh_from_db()
    assert (broadcast.state, broadcast.hold_reason) == ("held", breaker.SENDER_HOLD)
    alert = OrgAlert.objects.get(kind=OrgAlert.Kind.CIRCUIT_BREAKER)
    assert alert.sender_ref == sender.address
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 0
    assert len(calls) == 20


def callback(message, code, capture):
    event_store.event_store(
        kind=MessageEvent.Kind.STATUS,
        params={
            "MessageSid": message.provider_sid,
            "MessageStatus": "undelivered",
            "ErrorCode": str(code),
            "To": message.to_number,
            "From": message.from_number,
        },
        query={"m": str(message.pk)},
    )
    with capture(execute=True):
        events.events_apply_pending()


@pytest.mark.parametrize("code", [30034, 21606])
def test_a_misconfigured_sender_trips_when_the_twentieth_error_comes_by_callback(
    org, owner, backend, django_capture_on_commit_callbacks, code
):
    members(org, 60)
    sender = make_sender(org, throughput=2)  # 40 released ahead of its pace
    broadcast = start(org, owner, sender)
    broadcasts.broadcast_dispatch(broadcast.pk)
    assert len(backend.outbox) == 40
    sent = list(Message.objects.filter(broadcast=broadcast).exclude(provider_sid=None))

    for message in sent[:19]:
        callback(message, code, django_capture_on_commit_callbacks)
    sender.refresh_from_db()
    assert sender.broadcasts_paused_until is None
    callback(sent[19], code, django_capture_on_commit_callbacks)

    sender.refresh_from_db()
    assert sender.broadcasts_paused_until > timezone.now()
    assert OrgAlert.objects.filter(kind=OrgAlert.Kind.CIRCUIT_BREAKER).count() == 1
    broadcast.refresh_from_db()
    assert (broadcast.state, broadcast.hold_reason) == ("held", breaker.SENDER_HOLD)
    # A message released before the trip and claimed after it does not go out either.
    late = Message.objects.filter(broadcast=broadcast, dispatch=Message.Dispatch.HELD).first()
    Message.objects.filter(pk=late.pk).update(dispatch=Message.Dispatch.WAITING)
    tasks.send_message.delay(late.pk)
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 0
    assert len(backend.outbox) == 40
    late.refresh_from_db()
    assert (late.dispatch, late.status) == ("held", "pending")


def test_a_text_filtered_as_spam_pauses_that_text_and_not_the_sender(
    org, owner, backend, monkeypatch
):
    members(org, 60)
    sender = make_sender(org, throughput=5)
    spam = "FREE!!! Win a membership now: bit.ly/xyz"
    calls = answer_create(monkeypatch, backend, lambda to, body: 30007 if body == spam else None)

    filtered = start(org, owner, sender, body=spam)
    broadcasts.broadcast_dispatch(filtered.pk)
    assert len(calls) == 20
    filtered.refresh_from_db()
    assert (filtered.state, filtered.hold_reason) == ("held", breaker.BODY_HOLD)

    other = start(org, owner, sender, body="The pool reopens on Monday.")
    dispatch_until_done(other)
    assert other.state == Broadcast.State.FINISHED
    assert Message.objects.filter(broadcast=other, status="queued").count() == 60
    sender.refresh_from_db()
    assert sender.broadcasts_paused_until is None
    assert broadcasts.broadcast_dispatch(filtered.pk) == 0
