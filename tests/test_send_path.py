"""The send path (SPEC §5–§6): create, claim, check, send, retry, reconcile, expire.

Tasks run in the caller (TASKS_IN_PROCESS=sync) with the locmem backend; on-commit enqueues run
through django_capture_on_commit_callbacks(execute=True), as they would after a real commit.
"""

from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.db import OperationalError
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException

from config import inprocess
from conversations import reconciliation, sending, status, tasks
from conversations.backends import RemoteMessage, SendError, SimulatorBackend, get_backend
from conversations.models import Message, MessageEvent
from conversations.segments import segment
from deliverability.models import InvalidSource, NumberFacts, NumberState, OptOutReason
from tests.factories import make_contact, make_message
from tests.twilio_requests import PUBLIC_BASE_URL, new_sid

PHONE = "+12125550123"


@pytest.fixture(autouse=True)
def _public_url(settings):
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL


@pytest.fixture
def locmem():
    return get_backend("locmem")


def create(org, contact, capture, body="See you at the 6pm class!", **kwargs):
    """Create an outbound message and commit: the send task runs after the commit."""
    with capture(execute=True):
        message = sending.message_create_outbound(org=org, contact=contact, body=body, **kwargs)
    message.refresh_from_db()
    return message


def state_of(org, phone=PHONE):
    return NumberState.objects.filter(organization=org, phone=phone).first()


# Creating and sending ---------------------------------------------------------------------------


def test_create_stores_a_pending_message_and_sends_only_after_commit(
    org, contact, locmem, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        message = sending.message_create_outbound(org=org, contact=contact, body="Hello")
        stored = Message.objects.get(pk=message.pk)
        assert stored.status == Message.Status.PENDING
        assert stored.dispatch == Message.Dispatch.WAITING
        assert locmem.outbox == []  # Nothing leaves before the transaction commits.

    assert len(callbacks) == 1
    assert len(locmem.outbox) == 1


def test_a_transaction_that_never_commits_sends_nothing(
    org, contact, locmem, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        sending.message_create_outbound(org=org, contact=contact, body="Hello")

    assert len(callbacks) == 1
    assert locmem.outbox == []


def test_the_backend_gets_the_message_once_with_our_status_callback(
    org, contact, sender, locmem, django_capture_on_commit_callbacks
):
    message = create(org, contact, django_capture_on_commit_callbacks, body="Hello there")

    [sent] = locmem.outbox
    assert (sent["to"], sent["from"], sent["body"]) == (PHONE, sender.phone_number, "Hello there")
    url, _, fragment = sent["callback"].partition("#")
    assert url == f"{PUBLIC_BASE_URL}/webhooks/twilio/status/?m={message.pk}"
    assert fragment in ("", "rc=5&rp=all")
    assert message.provider_sid == sent["sid"]
    assert message.status == Message.Status.QUEUED
    assert message.dispatch == Message.Dispatch.SUBMITTED
    assert message.sent_at is not None
    assert message.attempts == 1


def test_a_second_send_task_for_the_same_message_does_nothing(
    org, contact, locmem, django_capture_on_commit_callbacks
):
    message = create(org, contact, django_capture_on_commit_callbacks)

    tasks.send_message.delay(message.pk)

    assert len(locmem.outbox) == 1
    assert sending.message_send(message.pk) == "not claimable"
    message.refresh_from_db()
    assert message.attempts == 1


def test_an_empty_body_is_refused(org, contact):
    with pytest.raises(sending.SendRefused):
        sending.message_create_outbound(org=org, contact=contact, body="   ")

    assert not Message.objects.exists()


# Pre-send checks ------------------------------------------------------------------------------


def make_opted_out(org, owner, contact):
    NumberState.objects.of(org=org, phone=PHONE).opt_out(
        reason=OptOutReason.STAFF, by=owner, note="asked at the desk"
    )


def make_invalid(org, owner, contact):
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=owner)


def make_landline(org, owner, contact):
    NumberFacts.objects.create(phone=PHONE, line_type="landline")


def make_paused(org, owner, contact):
    NumberState.objects.of(org=org, phone=PHONE).pause(
        until=timezone.now() + timedelta(days=7), by=owner
    )


def make_recent_errors(org, owner, contact):
    now = timezone.now()
    NumberState.objects.create(
        organization=org,
        phone=PHONE,
        error_streak=5,
        streak_fifth_error_at=now - timedelta(days=2),
        last_attempt_at=now - timedelta(days=1),
    )


def make_global_errors(org, owner, contact):
    NumberFacts.objects.create(
        phone=PHONE, errors_since_heartbeat=6, last_attempt_at=timezone.now() - timedelta(days=1)
    )


def make_unparseable(org, owner, contact):
    contact.set_phone("n/a")
    contact.save()


@pytest.mark.parametrize(
    "make_state, reason",
    [
        (make_opted_out, "opted_out"),
        (make_invalid, "marked_invalid"),
        (make_unparseable, "invalid_number"),
        (make_landline, "landline"),
        (make_paused, "paused"),
        (make_recent_errors, "recent_errors"),
        (make_global_errors, "global_lifetime_error_count"),
    ],
)
def test_a_message_that_fails_a_check_is_skipped_and_not_sent(
    org, owner, contact, locmem, django_capture_on_commit_callbacks, make_state, reason
):
    make_state(org, owner, contact)

    message = create(org, contact, django_capture_on_commit_callbacks)

    assert message.status == Message.Status.SKIPPED
    assert message.skip_reason == reason
    assert message.dispatch == Message.Dispatch.DONE
    assert status.staff_status(message) == "Skipped"
    assert locmem.outbox == []


@pytest.mark.parametrize(
    "make_state", [make_landline, make_paused, make_recent_errors, make_global_errors]
)
def test_a_sample_text_skips_the_other_checks(
    org, owner, contact, locmem, django_capture_on_commit_callbacks, make_state
):
    make_state(org, owner, contact)

    message = create(org, contact, django_capture_on_commit_callbacks, is_test=True)

    assert message.status == Message.Status.QUEUED
    assert len(locmem.outbox) == 1


@pytest.mark.parametrize(
    "make_state, reason", [(make_opted_out, "opted_out"), (make_invalid, "marked_invalid")]
)
def test_a_sample_text_still_honours_opt_out_and_the_invalid_flag(
    org, owner, contact, locmem, django_capture_on_commit_callbacks, make_state, reason
):
    make_state(org, owner, contact)

    message = create(org, contact, django_capture_on_commit_callbacks, is_test=True)

    assert message.skip_reason == reason
    assert locmem.outbox == []


# Provider errors ------------------------------------------------------------------------------


def test_a_21610_from_the_create_call_opts_the_number_out(
    org, contact, locmem, django_capture_on_commit_callbacks
):
    locmem.fail_with.append(SendError("Attempt to send to unsubscribed recipient", code=21610))

    message = create(org, contact, django_capture_on_commit_callbacks)

    assert message.status == Message.Status.FAILED
    assert message.error_code == 21610
    assert message.error_message == "Message blocked by STOP"
    assert message.dispatch == Message.Dispatch.DONE
    assert state_of(org).opt_out_reason == OptOutReason.CARRIER_STOP
    assert MessageEvent.objects.get(message=message).kind == MessageEvent.Kind.SEND_ERROR


def test_a_21614_from_the_create_call_flags_the_number_invalid(
    org, contact, locmem, django_capture_on_commit_callbacks
):
    locmem.fail_with.append(SendError("not a mobile number", code=21614, http_status=400))

    message = create(org, contact, django_capture_on_commit_callbacks)

    assert message.status == Message.Status.FAILED
    assert message.error_message == "Landline; not SMS-capable"
    state = state_of(org)
    assert state.invalid_source == InvalidSource.AUTOMATIC
    assert state.invalid_code == "21614"
    # The next message to the number is not sent.
    again = create(org, contact, django_capture_on_commit_callbacks)
    assert again.skip_reason == "marked_invalid"


def test_a_refusal_without_a_twilio_code_fails_without_blaming_the_number(
    org, contact, locmem, django_capture_on_commit_callbacks
):
    # A proxy or a contract break answers 4xx with no Twilio error code.
    locmem.fail_with.append(SendError("Unable to create record", http_status=422))

    message = create(org, contact, django_capture_on_commit_callbacks)

    assert message.status == Message.Status.FAILED
    assert message.error_code is None
    assert message.error_message == "Refused (HTTP 422): Unable to create record"
    state = state_of(org)
    assert state.error_streak == 0
    assert not state.is_invalid
    assert not NumberFacts.objects.filter(phone=PHONE, error_count__gt=0).exists()


def waiting_message(org, contact, capture):
    """A message created and committed, its send task not yet run."""
    with capture(execute=False):
        message = sending.message_create_outbound(org=org, contact=contact, body="Class moved")
    return message


@pytest.mark.parametrize(
    "error",
    [
        SendError("Service Unavailable", http_status=503, transient=True),
        SendError("Too Many Requests", code=429, http_status=429, transient=True),
        SendError("Queue overflow", code=30001, http_status=400, transient=True),
    ],
)
def test_a_transient_failure_releases_the_claim_and_retries(
    org, contact, locmem, django_capture_on_commit_callbacks, error
):
    message = waiting_message(org, contact, django_capture_on_commit_callbacks)
    locmem.fail_with.append(error)

    with pytest.raises(Retry):
        tasks.send_message.delay(message.pk)

    message.refresh_from_db()
    assert message.dispatch == Message.Dispatch.WAITING
    assert message.status == Message.Status.PENDING
    assert locmem.outbox == []
    # The provider recovers: the retry sends it.
    tasks.send_message.apply(args=[message.pk], retries=1, throw=True)
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert len(locmem.outbox) == 1
    # Nothing happened to the number.
    assert state_of(org).error_streak == 0
    assert not state_of(org).is_opted_out


def test_a_send_that_keeps_failing_gives_up_after_the_retries(
    org, contact, locmem, django_capture_on_commit_callbacks
):
    message = waiting_message(org, contact, django_capture_on_commit_callbacks)
    locmem.fail_with.extend(
        SendError("Service Unavailable", http_status=503, transient=True)
        for _ in range(tasks.MAX_SEND_RETRIES + 1)
    )

    for attempt in range(tasks.MAX_SEND_RETRIES):
        with pytest.raises(Retry):
            tasks.send_message.apply(args=[message.pk], retries=attempt, throw=True)
    tasks.send_message.apply(args=[message.pk], retries=tasks.MAX_SEND_RETRIES, throw=True)

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.dispatch == Message.Dispatch.DONE
    assert "Service Unavailable" in message.error_message
    assert message.attempts == tasks.MAX_SEND_RETRIES + 1
    assert locmem.outbox == []


def test_an_unknown_outcome_found_at_the_provider_is_adopted_not_resent(
    org, contact, locmem, django_capture_on_commit_callbacks
):
    # The create call reached Twilio, then the connection dropped before the answer.
    sid = new_sid()
    locmem.remote[sid] = RemoteMessage(sid=sid, status="sent", to=PHONE, body="Class moved")
    locmem.fail_with.append(SendError("Read timed out", transient=True, unknown=True))

    message = create(org, contact, django_capture_on_commit_callbacks, body="Class moved")

    assert locmem.outbox == []
    assert message.provider_sid == sid
    assert message.status == Message.Status.SENT
    assert message.dispatch == Message.Dispatch.SUBMITTED
    assert message.attempts == 1


def test_an_unknown_outcome_not_found_at_the_provider_is_sent_again_once(
    org, contact, locmem, django_capture_on_commit_callbacks
):
    locmem.fail_with.append(SendError("Connection aborted", transient=True, unknown=True))

    message = create(org, contact, django_capture_on_commit_callbacks)

    [sent] = locmem.outbox
    assert message.provider_sid == sent["sid"]
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 2
    # A second reconciliation of the same message does nothing.
    assert reconciliation.reconcile_unknown_send(message.pk) == "nothing to reconcile"
    assert len(locmem.outbox) == 1


def test_an_unknown_outcome_is_reconciled_again_when_the_provider_did_not_answer(
    org, contact, locmem, monkeypatch, django_capture_on_commit_callbacks
):
    locmem.fail_with.append(SendError("Read timed out", transient=True, unknown=True))

    def provider_down(**lookup):
        raise TwilioRestException(503, "https://api.twilio.com/", "Service Unavailable")

    monkeypatch.setattr(locmem, "find", provider_down)
    with pytest.raises(TwilioRestException):
        create(org, contact, django_capture_on_commit_callbacks)
    message = Message.objects.get()
    assert message.dispatch == Message.Dispatch.UNKNOWN
    assert locmem.outbox == []

    # The provider answers again; the periodic sweep finds the send still unresolved.
    monkeypatch.undo()
    Message.objects.filter(pk=message.pk).update(
        claimed_at=timezone.now() - reconciliation.CLAIM_TIMEOUT - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sweep_messages.delay()

    message.refresh_from_db()
    assert len(locmem.outbox) == 1
    assert message.provider_sid == locmem.outbox[0]["sid"]
    assert message.status == Message.Status.QUEUED


def claimed_message(contact, sender, claimed_ago):
    return make_message(
        contact,
        sender,
        status=Message.Status.PENDING,
        dispatch=Message.Dispatch.CLAIMED,
        claimed_at=timezone.now() - claimed_ago,
        attempts=1,
    )


def test_a_claim_of_a_dead_worker_is_reconciled_then_sent_once(
    contact, sender, locmem, django_capture_on_commit_callbacks
):
    stale = claimed_message(contact, sender, timedelta(minutes=10))
    fresh = claimed_message(contact, sender, timedelta(seconds=20))

    with django_capture_on_commit_callbacks(execute=True):
        reconciliation.reclaim_stale_claims()

    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert [sent["callback"].split("#")[0].rsplit("=", 1)[1] for sent in locmem.outbox] == [
        str(stale.pk)
    ]
    assert stale.status == Message.Status.QUEUED
    assert fresh.dispatch == Message.Dispatch.CLAIMED


def test_a_claim_of_a_dead_worker_that_reached_the_provider_is_adopted(
    contact, sender, locmem, django_capture_on_commit_callbacks
):
    stale = claimed_message(contact, sender, timedelta(minutes=10))
    sid = new_sid()
    locmem.remote[sid] = RemoteMessage(sid=sid, status="delivered", to=PHONE, body=stale.body)

    with django_capture_on_commit_callbacks(execute=True):
        reconciliation.reclaim_stale_claims()

    stale.refresh_from_db()
    assert locmem.outbox == []
    assert stale.provider_sid == sid
    assert stale.status == Message.Status.DELIVERED


# Expiry and stuck messages --------------------------------------------------------------------


def test_a_message_waiting_past_the_validity_period_expires_without_counting_against_the_number(
    org, contact, sender, settings, locmem, django_capture_on_commit_callbacks
):
    old = waiting_message(org, contact, django_capture_on_commit_callbacks)
    recent = waiting_message(org, contact, django_capture_on_commit_callbacks)
    Message.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.MESSAGE_VALIDITY_SECONDS + 60)
    )

    assert reconciliation.expire_overdue() == 1

    old.refresh_from_db()
    assert old.status == Message.Status.FAILED
    assert old.error_code == 30036
    assert old.error_message == "Message expired"
    assert old.dispatch == Message.Dispatch.DONE
    recent.refresh_from_db()
    assert recent.status == Message.Status.PENDING
    state = state_of(org)
    assert state is None or state.error_streak == 0
    assert not NumberFacts.objects.filter(phone=PHONE, error_count__gt=0).exists()
    # The send task that finally runs does not send the expired message.
    tasks.send_message.delay(old.pk)
    assert locmem.outbox == []


def stuck_message(contact, sender, locmem, sent_ago, remote_status, error_code=None):
    sid = new_sid()
    locmem.remote[sid] = RemoteMessage(
        sid=sid, status=remote_status, error_code=error_code, to=contact.phone_e164
    )
    return make_message(
        contact,
        sender,
        status=Message.Status.SENT,
        provider_sid=sid,
        dispatch=Message.Dispatch.SUBMITTED,
        sent_at=timezone.now() - sent_ago,
    )


def test_a_message_stuck_without_a_final_status_shows_status_unavailable(contact, sender, locmem):
    stuck = stuck_message(contact, sender, locmem, timedelta(minutes=45), "delivered")
    recent = stuck_message(contact, sender, locmem, timedelta(minutes=5), "delivered")

    assert status.staff_status(stuck) == "Status Unavailable"
    assert status.staff_status(recent) == "Sent"


def test_reconciliation_applies_the_providers_status_to_stuck_messages(
    org, contact, sender, locmem
):
    delivered = stuck_message(contact, sender, locmem, timedelta(minutes=45), "delivered")
    failed = stuck_message(contact, sender, locmem, timedelta(minutes=40), "undelivered", 30003)
    recent = stuck_message(contact, sender, locmem, timedelta(minutes=5), "delivered")

    reconciliation.reconcile_stuck()

    delivered.refresh_from_db()
    failed.refresh_from_db()
    recent.refresh_from_db()
    assert delivered.status == Message.Status.DELIVERED
    assert status.staff_status(delivered) == "Delivered"
    assert failed.status == Message.Status.UNDELIVERED
    assert failed.error_message == "Unreachable"
    assert recent.status == Message.Status.SENT  # Still inside the window: left alone.
    assert MessageEvent.objects.filter(message=delivered, status="delivered").count() == 1


def test_reconciling_twice_records_the_fetched_status_once(contact, sender, locmem):
    stuck = stuck_message(contact, sender, locmem, timedelta(minutes=45), "undelivered", 30003)

    reconciliation.reconcile_stuck()
    reconciliation.reconcile_stuck()

    assert MessageEvent.objects.filter(message=stuck).count() == 1
    assert state_of(stuck.organization).error_streak == 1


# Segments -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, encoding, segments",
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # Extended characters take two septets.
        ("€" * 81, "GSM-7", 2),
        ("[" + "a" * 159, "GSM-7", 2),
        ("é" * 160, "GSM-7", 1),  # é is in the basic GSM-7 table.
        ("ê" * 70, "UCS-2", 1),
        ("ê" * 71, "UCS-2", 2),
        ("ê" * 134, "UCS-2", 2),
        ("ê" * 135, "UCS-2", 3),
        ("😀" * 35, "UCS-2", 1),  # An emoji is two UTF-16 units.
        ("😀" * 36, "UCS-2", 2),
    ],
)
def test_segments_follow_gsm7_and_ucs2_limits(body, encoding, segments):
    parts = segment(body)

    assert parts.encoding == encoding
    assert parts.segments == segments


def test_a_message_stores_its_segments(org, contact, django_capture_on_commit_callbacks):
    message = create(org, contact, django_capture_on_commit_callbacks, body="Hi 😀 " + "x" * 70)

    assert message.encoding == "UCS-2"
    assert message.segments == 2


# The simulator, end to end --------------------------------------------------------------------


@pytest.fixture
def simulator(settings):
    settings.SMS_BACKEND = "simulator"
    settings.SIMULATOR_CHAOS = False
    settings.TWILIO_AUTH_TOKEN = ""
    # Its callbacks go through the real webhook, on a host Django accepts.
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    backend = get_backend("simulator")
    backend._attempts.clear()  # The flaky numbers alternate per attempt: start afresh.
    backend.remote.clear()
    return backend


def simulate(org, phone, capture):
    contact = make_contact(org, phone)
    message = create(org, contact, capture)
    return message, state_of(org, phone)


@pytest.mark.parametrize("phone", ["+12125550101", "+12125550188", "+15005550006"])
def test_simulator_delivers_to_mobile_numbers(
    org, sender, simulator, django_capture_on_commit_callbacks, phone
):
    message, state = simulate(org, phone, django_capture_on_commit_callbacks)

    assert message.status == Message.Status.DELIVERED
    assert message.provider_sid in simulator.remote
    assert message.carrier_done_at is not None
    assert not state.is_invalid
    assert NumberFacts.objects.get(phone=phone).last_heartbeat_at is not None
    # Both callbacks came through the signed webhook and were processed.
    events = MessageEvent.objects.filter(message=message)
    assert sorted(events.values_list("status", flat=True)) == ["delivered", "sent"]
    assert not events.filter(processed_at__isnull=True).exists()


def test_simulator_landline_fails_30006_and_the_relookup_flags_it(
    org, sender, simulator, django_capture_on_commit_callbacks
):
    message, state = simulate(org, "+12125550150", django_capture_on_commit_callbacks)

    assert message.status == Message.Status.UNDELIVERED
    assert message.error_code == 30006
    assert NumberFacts.objects.get(phone="+12125550150").line_type == "landline"
    assert state.invalid_source == InvalidSource.AUTOMATIC
    assert state.invalid_code == "lookup"
    assert state.invalid_reason == "Landline; not SMS-capable"


def test_simulator_unknown_handset_fails_30005_and_is_flagged(
    org, sender, simulator, django_capture_on_commit_callbacks
):
    message, state = simulate(org, "+12125550165", django_capture_on_commit_callbacks)

    assert message.status == Message.Status.UNDELIVERED
    assert message.error_code == 30005
    assert state.invalid_code == "30005"


def test_simulator_flaky_number_alternates(
    org, sender, simulator, django_capture_on_commit_callbacks
):
    contact = make_contact(org, "+12125550175")

    outcomes = [
        (message.status, message.error_code)
        for message in (create(org, contact, django_capture_on_commit_callbacks) for _ in range(3))
    ]

    assert outcomes == [("delivered", None), ("undelivered", 30003), ("delivered", None)]


def test_simulator_carrier_filtering_fails_30007_without_touching_the_number(
    org, sender, simulator, django_capture_on_commit_callbacks
):
    message, state = simulate(org, "+12125550182", django_capture_on_commit_callbacks)

    assert message.status == Message.Status.UNDELIVERED
    assert message.error_code == 30007
    assert message.error_message == "Spam detected (carrier filtering)"
    assert not state.is_invalid
    assert not state.is_opted_out
    assert state.error_streak == 0


def test_simulator_carrier_stop_fails_at_create_and_opts_out(
    org, sender, simulator, django_capture_on_commit_callbacks
):
    message, state = simulate(org, "+12125550192", django_capture_on_commit_callbacks)

    assert message.status == Message.Status.FAILED
    assert message.error_code == 21610
    assert message.provider_sid is None
    assert state.opt_out_reason == OptOutReason.CARRIER_STOP


def test_simulator_magic_landline_fails_21614_at_create_and_is_flagged(
    org, sender, simulator, django_capture_on_commit_callbacks
):
    message, state = simulate(org, "+15005550009", django_capture_on_commit_callbacks)

    assert message.status == Message.Status.FAILED
    assert message.error_code == 21614
    assert state.invalid_code == "21614"


# Claims renewed after pacing, and back-off without a broker -------------------------------------


def test_a_worker_that_lost_its_claim_while_pacing_does_not_send(
    org, contact, sender, locmem, monkeypatch, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        message = sending.message_create_outbound(org=org, contact=contact, body="Hi")

    def sweeper_takes_the_claim(key, rate, **options):
        # While this worker waits, the sweeper decides it is dead and takes the message over.
        Message.objects.filter(pk=message.pk).update(dispatch=Message.Dispatch.UNKNOWN)

    monkeypatch.setattr(sending, "wait_for_slot", sweeper_takes_the_claim)

    outcome = sending.message_send(message.pk)

    assert outcome.startswith("claim lost")
    assert locmem.outbox == []


def test_without_a_broker_a_retry_waits_its_back_off(
    org, contact, sender, locmem, settings, monkeypatch
):
    # Background threads stand in for workers: a retry is scheduled after its back-off, not
    # run again at once as Celery's eager mode would.
    settings.TASKS_IN_PROCESS = "thread"
    scheduled = []
    monkeypatch.setattr(
        inprocess,
        "submit",
        lambda task, args, kwargs, countdown=0.0, retries=0, queue=None: scheduled.append(
            (task.name, list(args), countdown, retries, queue)
        ),
    )
    locmem.fail_with.append(SendError("Twilio is down", http_status=503, transient=True))
    message = make_message(contact, sender, status=Message.Status.PENDING, dispatch="waiting")

    tasks.send_message.apply(args=[message.pk])

    [(name, args, countdown, retries, queue)] = scheduled
    assert (name, args, retries) == ("conversations.tasks.send_message", [message.pk], 1)
    assert queue == "interactive"  # a one-to-one send retries where it came from
    assert countdown > 0
    message.refresh_from_db()
    assert message.dispatch == Message.Dispatch.WAITING
    assert locmem.outbox == []


def test_a_send_that_meets_a_database_outage_is_retried_later(
    org, contact, locmem, monkeypatch, django_capture_on_commit_callbacks
):
    message = waiting_message(org, contact, django_capture_on_commit_callbacks)

    def database_down(message_id):
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(sending, "message_send", database_down)
    with pytest.raises(Retry):
        tasks.send_message.delay(message.pk)
    monkeypatch.undo()
    message.refresh_from_db()
    assert (message.dispatch, locmem.outbox) == (Message.Dispatch.WAITING, [])
    tasks.send_message.apply(args=[message.pk], retries=1, throw=True)
    assert len(locmem.outbox) == 1


def test_a_send_another_worker_made_through_the_simulator_is_found_by_reconciliation(
    org, sender, simulator, django_capture_on_commit_callbacks
):
    """Workers are separate processes: the simulator keeps what it accepted in the cache too,
    so a worker reconciling an unknown outcome finds the message instead of sending it again."""
    message, _state = simulate(org, "+12125550101", django_capture_on_commit_callbacks)
    another_worker = SimulatorBackend()  # nothing in its own memory
    assert another_worker.fetch(message.provider_sid).status == "delivered"
    found = another_worker.find(to="+12125550101", from_=sender.address, after=message.created_at)
    assert [m.sid for m in found] == [message.provider_sid]
    assert (
        another_worker.find(to="+12125550102", from_=sender.address, after=message.created_at) == []
    )
