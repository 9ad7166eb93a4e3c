"""The Twilio backend against Twilio's published OpenAPI contract, served by Prism
(../shared/tools/twilio-mock). Run with TEST_SERVICES=twilio_mock."""

import contextlib
import os
import signal
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from conversations import reconciliation, sending
from conversations.backends import SendError, TwilioBackend, get_backend
from conversations.models import Message
from deliverability.models import NumberState
from tests.factories import make_contact, make_message, make_sender

pytestmark = pytest.mark.twilio_mock

TWILIO_MOCK = Path(__file__).resolve().parents[2] / "shared" / "tools" / "twilio-mock"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
# The contract's examples (what Prism answers without --dynamic).
EXAMPLE_CREATED_SID = "SM" + "a" * 32
EXAMPLE_SERVICE_SID = "MG" + "a" * 32
EXAMPLE_FROM = "+12019235161"
PHONE = "+12125550123"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def twilio_mock_url():
    """Start the contract mock on a free port for this module; stop it (by its pid) after."""
    port = _free_port()
    started = subprocess.run(
        [str(TWILIO_MOCK), "--port", str(port), "--background"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if started.returncode != 0:
        pytest.fail(f"the Twilio contract mock did not start: {started.stderr.strip()}")
    pid = int(started.stdout.strip().splitlines()[-1])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@pytest.fixture(autouse=True)
def _twilio_settings(settings, twilio_mock_url):
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_BASE_URL = twilio_mock_url
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = "mock-auth-token"
    settings.PUBLIC_BASE_URL = "https://reachable.example.com"


def test_a_send_goes_end_to_end_through_the_contract(
    org, contact, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        message = sending.message_create_outbound(org=org, contact=contact, body="Hello 👍")

    message.refresh_from_db()
    assert message.provider_sid == EXAMPLE_CREATED_SID
    assert message.status == Message.Status.QUEUED
    assert message.dispatch == Message.Dispatch.SUBMITTED
    assert message.error_code is None


def test_a_send_from_a_messaging_service_goes_through(org, django_capture_on_commit_callbacks):
    service = make_sender(org, phone_number="", messaging_service_sid=EXAMPLE_SERVICE_SID)
    contact = make_contact(org, "+12125550124")

    with django_capture_on_commit_callbacks(execute=True):
        message = sending.message_create_outbound(
            org=org, contact=contact, body="Hello", sender=service
        )

    message.refresh_from_db()
    assert message.provider_sid == EXAMPLE_CREATED_SID
    assert message.status == Message.Status.QUEUED


def test_a_create_that_breaks_the_contract_is_a_permanent_send_error():
    backend = get_backend()

    with pytest.raises(SendError) as refused:
        backend.send(
            to=PHONE,
            from_="+14155550100",
            body="Hello",
            status_callback="not a url",  # The contract wants a URI.
        )

    assert refused.value.http_status in (400, 422)
    assert not refused.value.transient
    assert not refused.value.outcome_unknown


def test_a_message_refused_by_the_contract_fails_without_blaming_the_number(
    org, contact, settings, django_capture_on_commit_callbacks
):
    settings.PUBLIC_BASE_URL = "not a url"  # A misconfiguration: the StatusCallback is invalid.

    with django_capture_on_commit_callbacks(execute=True):
        message = sending.message_create_outbound(org=org, contact=contact, body="Hello")

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.dispatch == Message.Dispatch.DONE
    assert message.provider_sid is None
    assert "422" in message.error_message
    state = NumberState.objects.get(organization=org, phone=PHONE)
    assert state.error_streak == 0
    assert not state.is_invalid


def test_fetch_by_sid_reads_the_message():
    remote = TwilioBackend().fetch("SM" + "b" * 32)

    assert remote.sid.startswith("SM")
    assert remote.status == "sent"
    assert remote.to.startswith("+")


def test_find_matches_a_messaging_service_sender():
    since = datetime(2019, 1, 1, tzinfo=UTC)

    by_service = TwilioBackend().find(to="+18182008801", from_=EXAMPLE_SERVICE_SID, after=since)
    by_number = TwilioBackend().find(to="+18182008801", from_=EXAMPLE_FROM, after=since)
    by_other = TwilioBackend().find(to="+18182008801", from_="+14155550100", after=since)

    assert by_service
    assert by_number
    assert by_other == []


def test_reconciliation_reads_a_stuck_message_from_the_api(contact, sender):
    stuck = make_message(
        contact,
        sender,
        status=Message.Status.QUEUED,
        provider_sid="SM" + "c" * 32,
        dispatch=Message.Dispatch.SUBMITTED,
        sent_at=timezone.now() - timedelta(hours=1),
    )

    assert reconciliation.reconcile_stuck() == 1

    stuck.refresh_from_db()
    assert stuck.status == Message.Status.SENT  # What the contract's example says.
