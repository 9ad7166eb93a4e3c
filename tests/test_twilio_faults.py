"""The twilio backend and the send path against a Twilio that fails (tests/fake_twilio.py):
500s (before and after it took the message), 429s and answers that never come.

Every message ends sent exactly once: a 429 is retried with back-off; a 5xx or a timeout may
have created the message, so it is looked for at Twilio before any retry. Tasks run in the
caller; the full stack with a real worker is in test_faults.py.
"""

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from conversations import reconciliation, sending, tasks
from conversations.backends import SendError, TwilioBackend
from conversations.models import Message, MessageEvent
from tests.factories import make_message
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

PHONE = "+12125550123"


@pytest.fixture
def twilio(settings):
    fake = FakeTwilio(hang_seconds=1.5).start()
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_BASE_URL = fake.url
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_TIMEOUT = 1  # a hang outlasts it; a loaded machine answers the rest well within
    settings.PUBLIC_BASE_URL = "https://reachable.example.com"
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _no_back_off_wait(monkeypatch):
    """Retries run in the caller here; their back-off is asserted, not waited for."""
    delays = []

    def recorded(retries, base=5.0, cap=600.0):
        delays.append(min(cap, base * 2**retries))
        return 0

    monkeypatch.setattr(reconciliation, "backoff", recorded)
    monkeypatch.setattr("conversations.tasks.backoff", recorded)
    return delays


def send(org, contact, capture, body="Your class moved to 7pm"):
    with capture(execute=True):
        message = sending.message_create_outbound(org=org, contact=contact, body=body)
    message.refresh_from_db()
    return message


def attempt_faults(twilio, to=PHONE):
    return [attempt.fault for attempt in twilio.attempts_for(to)]


# The backend's reading of each answer ----------------------------------------------------------


def backend_send(body="Hello"):
    return TwilioBackend().send(
        to=PHONE, from_="+14155550100", body=body, status_callback="https://x.example/cb"
    )


@pytest.mark.parametrize("fault", ["500", "503", "500-after-create"])
def test_a_server_error_is_an_unknown_outcome(twilio, fault):
    twilio.fail(PHONE, fault)
    with pytest.raises(SendError) as raised:
        backend_send()
    assert raised.value.outcome_unknown and raised.value.transient
    assert raised.value.http_status == int(fault[:3])


def test_a_429_is_transient_and_known_to_have_sent_nothing(twilio):
    twilio.fail(PHONE, "429")
    with pytest.raises(SendError) as raised:
        backend_send()
    assert raised.value.transient and not raised.value.outcome_unknown
    assert (raised.value.http_status, raised.value.code) == (429, 20429)


def test_an_answer_that_never_comes_is_an_unknown_outcome(twilio):
    twilio.fail(PHONE, "hang")
    with pytest.raises(SendError) as raised:
        backend_send()
    assert raised.value.outcome_unknown and raised.value.transient


def test_a_created_message_is_read_back_by_sid_and_by_number(twilio):
    result = backend_send(body="Read me back")
    backend = TwilioBackend()
    assert backend.fetch(result.sid).body == "Read me back"
    [found] = backend.find(to=PHONE, from_="+14155550100", after=timezone.now().replace(year=2020))
    assert found.sid == result.sid


# The send path: every message sent exactly once ----------------------------------------------


def test_429s_are_retried_with_back_off_until_twilio_takes_the_message(
    twilio, org, contact, django_capture_on_commit_callbacks, _no_back_off_wait
):
    twilio.fail(PHONE, "429", "429")
    # In a worker, Celery runs each retry after its countdown; here the test runs them.
    with pytest.raises(Retry):
        send(org, contact, django_capture_on_commit_callbacks)
    message = Message.objects.get()
    assert (message.dispatch, message.provider_sid) == (Message.Dispatch.WAITING, None)
    with pytest.raises(Retry):
        tasks.send_message.apply(args=[message.pk], retries=1, throw=True)
    tasks.send_message.apply(args=[message.pk], retries=2, throw=True)
    message.refresh_from_db()
    [created] = twilio.created_for(PHONE)
    assert attempt_faults(twilio) == ["429", "429", ""]
    assert (message.provider_sid, message.dispatch) == (created["sid"], Message.Dispatch.SUBMITTED)
    assert message.attempts == 3
    assert _no_back_off_wait == [5.0, 10.0]  # about 5 s, then 10 s (with jitter)


@pytest.mark.parametrize("fault", ["500-after-create", "hang-after-create"])
def test_a_message_twilio_took_before_failing_is_found_and_not_sent_again(
    twilio, org, contact, django_capture_on_commit_callbacks, fault
):
    twilio.fail(PHONE, fault)
    message = send(org, contact, django_capture_on_commit_callbacks)
    [created] = twilio.created_for(PHONE)
    assert attempt_faults(twilio) == [fault]  # no second create
    assert message.provider_sid == created["sid"]
    assert (message.dispatch, message.status) == (Message.Dispatch.SUBMITTED, "queued")
    assert message.attempts == 1


@pytest.mark.parametrize("fault", ["500", "503", "hang"])
def test_a_message_twilio_never_took_is_sent_again_after_it_was_looked_for(
    twilio, org, contact, django_capture_on_commit_callbacks, fault, _no_back_off_wait
):
    twilio.fail(PHONE, fault)
    message = send(org, contact, django_capture_on_commit_callbacks)
    [created] = twilio.created_for(PHONE)
    assert attempt_faults(twilio) == [fault, ""]
    assert message.provider_sid == created["sid"]
    assert message.attempts == 2
    assert _no_back_off_wait == [5.0]  # the second send waited its back-off


def test_a_twilio_that_keeps_failing_is_given_up_on_after_the_retries(
    twilio, org, contact, django_capture_on_commit_callbacks, _no_back_off_wait
):
    twilio.fail(PHONE, *["500"] * sending.MAX_SEND_ATTEMPTS)
    message = send(org, contact, django_capture_on_commit_callbacks)
    assert twilio.created_for(PHONE) == []
    assert len(twilio.attempts_for(PHONE)) == sending.MAX_SEND_ATTEMPTS
    assert (message.status, message.dispatch) == (Message.Status.FAILED, Message.Dispatch.DONE)
    assert message.error_message.startswith("Gave up after retries")
    assert _no_back_off_wait == [5.0 * 2**n for n in range(sending.MAX_SEND_ATTEMPTS - 1)]
    # The number is not blamed for Twilio's trouble.
    assert not MessageEvent.objects.filter(kind=MessageEvent.Kind.SEND_ERROR).exists()


def test_reconciliation_does_not_adopt_an_earlier_message_with_the_same_text(
    twilio, org, contact, sender, django_capture_on_commit_callbacks
):
    """The same reminder sent a minute earlier is at Twilio under another message of ours."""
    earlier = backend_send(body="Your class moved to 7pm")
    make_message(contact, sender, body="Your class moved to 7pm", provider_sid=earlier.sid)
    twilio.fail(PHONE, "500")
    message = send(org, contact, django_capture_on_commit_callbacks)
    assert len(twilio.created_for(PHONE)) == 2
    assert message.provider_sid not in ("", None, earlier.sid)
