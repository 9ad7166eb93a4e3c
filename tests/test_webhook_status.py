"""POST /webhooks/twilio/status/: Twilio's message status callbacks (SPEC §6).

Every request here is what Twilio sends: a form-encoded POST signed with
RequestValidator.compute_signature over PUBLIC_BASE_URL + path + query and every parameter.
"""

import logging
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.db import OperationalError
from django.test import RequestFactory
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from conversations import event_store, webhooks
from conversations.models import Message, MessageEvent
from deliverability.models import InvalidSource, NumberFacts, NumberState, OptOutReason
from tests.factories import make_contact, make_message, make_sender
from tests.twilio_requests import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INBOUND_PATH,
    PUBLIC_BASE_URL,
    STATUS_PATH,
    new_sid,
    post_form,
    post_signed,
    signature,
    status_params,
    status_path,
)

SHARED_KEY = "webhooks-shared-key-secret"
SHARED_KEY_SETTINGS = "key=webhooks_sharedkey_0123456789,algorithm=HMAC_SHA256"

# twilio-python's own RequestValidator test vector (tests/unit/test_request_validator.py).
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
VECTOR_TOKEN = "12345"
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


@pytest.fixture(autouse=True)
def _twilio_settings(settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_WEBHOOK_SIGNING_KEY = ""
    # Behind a proxy: Twilio calls the public origin, Django sees another Host.
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL


@pytest.fixture
def sender(org):
    return make_sender(org, phone_number="+14155550100")


@pytest.fixture
def contact(org):
    return make_contact(org, "+12125550123")


def sent_message(contact, sender, **fields):
    fields.setdefault("provider_sid", new_sid())
    fields.setdefault("sent_at", timezone.now())
    fields.setdefault("dispatch", Message.Dispatch.SUBMITTED)
    return make_message(contact, sender, status=Message.Status.SENT, **fields)


@pytest.fixture
def message(contact, sender):
    return sent_message(contact, sender)


def callback(client, message, status, *, sid=None, headers=None, **extra):
    params = status_params(
        sid=sid or message.provider_sid,
        status=status,
        to=message.to_number,
        from_=message.from_number,
        **extra,
    )
    return post_signed(client, status_path(message), params, headers=headers)


def state_of(org, phone):
    return NumberState.objects.filter(organization=org, phone=phone).first()


# Accepted callbacks ---------------------------------------------------------------------------


def test_it_stores_and_processes_a_signed_callback(client, message):
    response = callback(client, message, "delivered")

    assert response.status_code == 204
    event = MessageEvent.objects.get()
    assert event.kind == MessageEvent.Kind.STATUS
    assert event.status == "delivered"
    assert event.message == message
    assert event.processed_at is not None
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.final_at is not None
    assert message.dispatch == Message.Dispatch.DONE


# In autocommit, as in production: closing the connection ends no test transaction.
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_database_dropped_is_opened_again_and_the_callback_stored(
    client, message, monkeypatch
):
    """After a database restart the first query on an old connection fails; once is forgiven."""
    real_store, calls = event_store.event_store, []

    def dropped_once(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real_store(**kwargs)

    monkeypatch.setattr(event_store, "event_store", dropped_once)
    response = callback(client, message, "delivered")
    assert response.status_code == 204
    assert len(calls) == 2
    assert MessageEvent.objects.get().status == "delivered"


@pytest.mark.django_db(transaction=True)
def test_a_database_that_stays_down_gets_a_503_for_twilio_to_retry(
    client, message, monkeypatch, caplog
):
    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(event_store, "event_store", down)
    with caplog.at_level(logging.ERROR, logger="conversations.webhooks"):
        response = callback(client, message, "delivered")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "database is unavailable" in caplog.text
    monkeypatch.undo()
    assert not MessageEvent.objects.exists()
    # Twilio's retry, once the database is back, is stored and processed.
    assert callback(client, message, "delivered").status_code == 204
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_it_validates_over_the_public_url_not_the_host_django_sees(client, message):
    params = status_params(sid=message.provider_sid, status="delivered")
    path = status_path(message)

    seen_by_django = post_signed(client, path, params, signed_url="http://testserver" + path)
    public = post_signed(client, path, params, signed_url=PUBLIC_BASE_URL + path)

    assert seen_by_django.status_code == 403
    assert public.status_code == 204


def test_twilio_pythons_test_vector_holds():
    validator = RequestValidator(VECTOR_TOKEN)

    assert validator.compute_signature(VECTOR_URL, VECTOR_PARAMS) == VECTOR_SIGNATURE
    assert validator.validate(VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE)


def _vector_request(params, signature_value):
    # Our URLconf has no /myapp.php, so the view is called directly with the vector's request.
    return RequestFactory().post(
        "/myapp.php?foo=1&bar=2",
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature_value},
    )


def test_our_webhook_accepts_twilio_pythons_test_vector(db, settings):
    settings.PUBLIC_BASE_URL = "https://mycompany.com"
    settings.TWILIO_AUTH_TOKEN = VECTOR_TOKEN

    response = webhooks.status_callback(_vector_request(VECTOR_PARAMS, VECTOR_SIGNATURE))

    assert response.status_code == 204
    assert MessageEvent.objects.count() == 1


def test_our_webhook_rejects_the_test_vector_with_a_changed_digit(db, settings):
    settings.PUBLIC_BASE_URL = "https://mycompany.com"
    settings.TWILIO_AUTH_TOKEN = VECTOR_TOKEN
    tampered = VECTOR_PARAMS | {"Digits": "1235"}

    response = webhooks.status_callback(_vector_request(tampered, VECTOR_SIGNATURE))

    assert response.status_code == 403
    assert not MessageEvent.objects.exists()


def test_it_accepts_a_shared_key_hmac_sha256_signature(client, settings, message):
    settings.TWILIO_WEBHOOK_SIGNING_KEY = SHARED_KEY
    path = status_path(message)
    params = status_params(sid=message.provider_sid, status="delivered")

    response = post_signed(
        client,
        path,
        params,
        token=SHARED_KEY,
        algorithm="HMAC_SHA256",
        headers={"X-Twilio-Webhooks-Signature-Settings": SHARED_KEY_SETTINGS},
    )

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


@pytest.mark.parametrize(
    "token, algorithm, configured_key",
    [
        (AUTH_TOKEN, "HMAC_SHA256", SHARED_KEY),  # The auth token is not the shared key.
        (SHARED_KEY, "HMAC_SHA1", SHARED_KEY),  # The header names SHA-256.
        (SHARED_KEY, "HMAC_SHA256", ""),  # No shared key configured: nothing validates.
    ],
)
def test_it_rejects_a_shared_key_signature_that_does_not_match(
    client, settings, message, token, algorithm, configured_key
):
    settings.TWILIO_WEBHOOK_SIGNING_KEY = configured_key
    params = status_params(sid=message.provider_sid, status="delivered")

    response = post_signed(
        client,
        status_path(message),
        params,
        token=token,
        algorithm=algorithm,
        headers={"X-Twilio-Webhooks-Signature-Settings": SHARED_KEY_SETTINGS},
    )

    assert response.status_code == 403
    assert not MessageEvent.objects.exists()


# Rejected requests ----------------------------------------------------------------------------


def assert_nothing_changed(message):
    assert not MessageEvent.objects.exists()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.error_code is None


def test_it_rejects_a_forged_signature(client, message):
    params = status_params(sid=message.provider_sid, status="undelivered", error_code=30003)

    response = post_form(
        client, status_path(message), params, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    )

    assert response.status_code == 403
    assert_nothing_changed(message)


def test_it_rejects_a_signature_made_with_another_token(client, message):
    params = status_params(sid=message.provider_sid, status="undelivered", error_code=30003)

    response = post_signed(client, status_path(message), params, token="someone-elses-token")

    assert response.status_code == 403
    assert_nothing_changed(message)


def test_it_rejects_a_missing_signature(client, message):
    params = status_params(sid=message.provider_sid, status="undelivered", error_code=30003)

    response = post_form(client, status_path(message), params)

    assert response.status_code == 403
    assert_nothing_changed(message)


def test_it_rejects_a_request_signed_for_the_inbound_url(client, message):
    params = status_params(sid=message.provider_sid, status="undelivered", error_code=30003)

    response = post_signed(
        client, status_path(message), params, signed_url=PUBLIC_BASE_URL + INBOUND_PATH
    )

    assert response.status_code == 403
    assert_nothing_changed(message)


def test_it_rejects_a_request_signed_for_another_host(client, message):
    path = status_path(message)
    params = status_params(sid=message.provider_sid, status="undelivered", error_code=30003)

    response = post_signed(client, path, params, signed_url="https://attacker.example.net" + path)

    assert response.status_code == 403
    assert_nothing_changed(message)


def test_it_rejects_a_request_signed_for_another_message_id(client, contact, sender, message):
    other = sent_message(contact, sender)
    params = status_params(sid=message.provider_sid, status="undelivered", error_code=30003)

    response = post_signed(
        client, status_path(message), params, signed_url=PUBLIC_BASE_URL + status_path(other)
    )

    assert response.status_code == 403
    assert_nothing_changed(message)


def test_it_rejects_a_tampered_parameter(client, message):
    path = status_path(message)
    params = status_params(sid=message.provider_sid, status="delivered")
    signed = signature(PUBLIC_BASE_URL + path, params)
    params["MessageStatus"] = params["SmsStatus"] = "undelivered"
    params["ErrorCode"] = "30003"

    response = post_form(client, path, params, {"X-Twilio-Signature": signed})

    assert response.status_code == 403
    assert_nothing_changed(message)


def test_it_rejects_get(client, message):
    response = client.get(status_path(message))

    assert response.status_code == 405
    assert not MessageEvent.objects.exists()


# Duplicates and unknown messages --------------------------------------------------------------


def test_a_retried_callback_with_the_same_idempotency_token_is_recorded_once(client, message):
    token = {"I-Twilio-Idempotency-Token": str(uuid.uuid4())}

    first = callback(client, message, "delivered", headers=token)
    again = callback(client, message, "delivered", headers=token)

    assert first.status_code == 204
    assert again.status_code == 204
    assert MessageEvent.objects.count() == 1


def test_a_duplicate_without_a_token_is_recorded_once_by_sid_status_and_code(client, message):
    first = callback(client, message, "undelivered", error_code=30003)
    again = callback(client, message, "undelivered", error_code=30003)

    assert first.status_code == 204
    assert again.status_code == 204
    assert MessageEvent.objects.count() == 1
    # The error counted once against the number, not twice.
    assert state_of(message.organization, message.to_number).error_streak == 1


def test_an_unknown_sid_gets_a_2xx_and_is_logged(db, client, caplog):
    caplog.set_level(logging.INFO, logger="conversations.events")
    sid = new_sid()

    response = post_signed(client, STATUS_PATH, status_params(sid=sid, status="delivered"))

    assert response.status_code == 204
    event = MessageEvent.objects.get()
    assert event.message is None
    # Our save of the SID may still come: it is looked for again later, for up to 72 hours.
    assert event.processed_at is None
    assert event.outcome == "unknown message (looking again)"
    assert event.attempts == 1 and event.next_attempt_at > event.received_at
    assert any(sid in record.getMessage() for record in caplog.records)


def test_a_callback_before_the_sid_was_saved_finds_the_message_by_our_id(client, contact, sender):
    # The create call has not returned yet: the message is claimed, without a SID.
    message = make_message(
        contact,
        sender,
        status=Message.Status.PENDING,
        provider_sid=None,
        dispatch=Message.Dispatch.CLAIMED,
    )
    sid = new_sid()

    response = callback(client, message, "sent", sid=sid)

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.provider_sid == sid
    assert MessageEvent.objects.get().message == message


def test_our_id_with_a_different_sid_is_not_trusted(client, contact, sender, message):
    stranger_sid = new_sid()

    response = callback(client, message, "undelivered", sid=stranger_sid, error_code=30003)

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    event = MessageEvent.objects.get()
    assert event.message is None and event.outcome == "unknown message (looking again)"


# What a status means ----------------------------------------------------------------------------


def test_raw_dlr_done_date_is_kept_as_carrier_done_at(client, message):
    callback(client, message, "delivered", RawDlrDoneDate="2601151342")

    message.refresh_from_db()
    assert message.carrier_done_at == datetime(2026, 1, 15, 13, 42, tzinfo=UTC)


def test_a_malformed_raw_dlr_done_date_is_ignored(client, message):
    response = callback(client, message, "delivered", RawDlrDoneDate="not-a-date")

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.carrier_done_at is None


def test_a_late_sent_after_delivered_changes_nothing(client, message):
    callback(client, message, "delivered")
    callback(client, message, "sent")

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert MessageEvent.objects.count() == 2  # Every callback is recorded.


def test_the_first_final_status_wins(client, message):
    callback(client, message, "delivered")
    callback(client, message, "undelivered", error_code=30003)

    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.error_code is None
    late = MessageEvent.objects.get(status="undelivered")
    assert late.message == message
    assert late.outcome.startswith("kept delivered")
    # The ignored failure did not count against the number.
    state = state_of(message.organization, message.to_number)
    assert state is None or state.error_streak == 0


def test_failed_21614_flags_the_number_invalid(client, org, message):
    callback(client, message, "failed", error_code=21614)

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error_code == 21614
    assert message.error_message == "Landline; not SMS-capable"
    state = state_of(org, message.to_number)
    assert state.invalid_source == InvalidSource.AUTOMATIC
    assert state.invalid_code == "21614"
    assert state.invalid_reason == "Landline; not SMS-capable"


def test_undelivered_21610_opts_the_number_out_as_carrier_stop(client, org, message):
    callback(client, message, "undelivered", error_code=21610)

    state = state_of(org, message.to_number)
    assert state.opt_out_reason == OptOutReason.CARRIER_STOP
    assert not state.is_invalid


def test_undelivered_30003_counts_an_error_against_the_number(client, org, message):
    callback(client, message, "undelivered", error_code=30003)

    message.refresh_from_db()
    assert message.error_message == "Unreachable"
    state = state_of(org, message.to_number)
    assert state.error_streak == 1
    assert not state.is_invalid
    assert not state.is_opted_out
    facts = NumberFacts.objects.get(phone=message.to_number)
    assert facts.error_count == 1
    assert facts.errors_since_heartbeat == 1


def test_delivered_is_a_heartbeat_and_ends_the_error_streak(client, org, contact, sender):
    failed = sent_message(contact, sender, sent_at=timezone.now() - timedelta(minutes=5))
    callback(client, failed, "undelivered", error_code=30003)
    delivered = sent_message(contact, sender)

    callback(client, delivered, "delivered")

    facts = NumberFacts.objects.get(phone=contact.phone_e164)
    assert facts.last_heartbeat_at is not None
    assert facts.errors_since_heartbeat == 0
    assert state_of(org, contact.phone_e164).error_streak == 0


# Any order, any duplication: the one final status wins ----------------------------------------

FINALS = [
    ("delivered", None),
    ("undelivered", 30003),
    ("undelivered", 30006),
    ("failed", 30005),
    ("failed", 21614),
    ("undelivered", 30007),
]


@st.composite
def callback_sequences(draw):
    """A message's callbacks as they might arrive: each distinct callback once or more
    (Twilio retries), in any order. Exactly one final status; `read` only with delivered."""
    final = draw(st.sampled_from(FINALS))
    distinct = [("queued", None), ("sending", None), ("sent", None), final]
    if final[0] == "delivered" and draw(st.booleans()):
        distinct.append(("read", None))
    arrivals = []
    for item in distinct:
        arrivals += [item] * draw(st.integers(min_value=1, max_value=3))
    arrivals = draw(st.permutations(arrivals))
    return final, arrivals, draw(st.booleans())


def expected_end(final, arrivals):
    """The final status, or `read` when read's first arrival came after delivered's."""
    first_seen = {}
    for index, (status, _) in enumerate(arrivals):
        first_seen.setdefault(status, index)
    if "read" in first_seen and first_seen["read"] > first_seen[final[0]]:
        return "read"
    return final[0]


@hypothesis_settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=callback_sequences())
def test_any_order_and_duplication_ends_on_the_final_status(client, contact, sender, sequence):
    final, arrivals, with_tokens = sequence
    message = make_message(
        contact,
        sender,
        status=Message.Status.QUEUED,
        provider_sid=new_sid(),
        sent_at=timezone.now(),
        dispatch=Message.Dispatch.SUBMITTED,
    )
    tokens = {item: str(uuid.uuid4()) for item in set(arrivals)}

    for status, code in arrivals:
        headers = {"I-Twilio-Idempotency-Token": tokens[status, code]} if with_tokens else None
        response = callback(client, message, status, error_code=code, headers=headers)
        assert response.status_code == 204

    message.refresh_from_db()
    assert message.status == expected_end(final, arrivals)
    assert message.error_code == final[1]
    assert message.dispatch == Message.Dispatch.DONE
    events = MessageEvent.objects.filter(message=message)
    assert events.count() == len(set(arrivals))  # Each distinct callback recorded once.
    assert not events.filter(processed_at__isnull=True).exists()
