"""Broadcast sends in chunks (conversations.bulksend): the same rules as one send at a time, at a
cost per message that does not grow with the chunk.

Tasks run in the caller (TASKS_IN_PROCESS=sync) with the locmem backend; pacing keeps its slots
but does not sleep (it has its own tests).
"""

import threading
import time as time_module
from datetime import time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config import pacing
from contacts.models import Contact
from conversations import breaker, broadcasts, bulksend
from conversations.backends import SendError, TwilioBackend, get_backend, send_paced
from conversations.models import Broadcast, Message
from deliverability import eligibility
from deliverability.models import NumberFacts, NumberState, OptOutReason
from tests.factories import make_sender


@pytest.fixture(autouse=True)
def _no_pacing_sleep(monkeypatch):
    monkeypatch.setattr(
        bulksend,
        "wait_for_slot",
        lambda key, rate, **options: pacing.wait_for_slot(
            key, rate, sleep=lambda seconds: None, window=False
        ),
    )


@pytest.fixture
def backend():
    return get_backend("locmem")


def released(org, owner, count, throughput=100):
    """A started broadcast of `count` members whose messages are released (waiting), not yet
    sent: the ids in order."""
    org.quiet_hours_start, org.quiet_hours_end = time(0, 0), time(23, 59, 59)
    org.save()
    contacts = []
    for n in range(count):
        contact = Contact(organization=org, first_name="Member", last_name=str(n))
        contact.set_phone(f"+1212400{n:04d}")
        contacts.append(contact)
    Contact.objects.bulk_create(contacts)
    sender = make_sender(org, throughput=throughput)
    broadcast = broadcasts.broadcast_start(
        org=org, sender=sender, body="Pool closes at 6.", kind=Broadcast.Audience.ALL, by=owner
    )
    messages = Message.objects.filter(broadcast=broadcast).order_by("pk")
    messages.update(dispatch=Message.Dispatch.WAITING)
    return broadcast, list(messages.values_list("pk", flat=True))


def test_the_dispatcher_hands_out_chunks_of_a_tenth_of_a_second_of_the_senders_rate(
    org, owner, backend, monkeypatch
):
    assert [bulksend.chunk_size(rate) for rate in (1, 3, 25, 100, 1000)] == [1, 1, 2, 10, 20]
    broadcast, ids = released(org, owner, 46)
    Message.objects.filter(pk__in=ids[1:]).update(dispatch=Message.Dispatch.HELD)
    handed = []
    monkeypatch.setattr(broadcasts, "enqueue", lambda task, chunk, **o: handed.append(chunk))
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 45  # one is still in flight
    assert [len(chunk) for chunk in handed] == [10, 10, 10, 10, 5]
    assert [pk for chunk in handed for pk in chunk] == ids[1:]


def test_a_release_into_an_empty_pipeline_staggers_its_first_chunks(
    org, owner, backend, monkeypatch
):
    """The workers taking a start's first chunks finish them at different times, not all at
    once (their next claims and checks would come together while nobody sends)."""
    assert [len(c) for c in bulksend.chunks(list(range(80)), 10, staggered=12)] == [
        *range(1, 11),
        1,
        2,
        10,
        10,
        2,
    ]
    broadcast, ids = released(org, owner, 45)
    Message.objects.filter(pk__in=ids).update(dispatch=Message.Dispatch.HELD)
    handed = []
    monkeypatch.setattr(broadcasts, "enqueue", lambda task, chunk, **o: handed.append(chunk))
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 45
    assert [len(chunk) for chunk in handed] == list(range(1, 10))
    assert [pk for chunk in handed for pk in chunk] == ids


def test_a_chunk_sends_each_message_once_with_one_statement_per_send(org, owner, backend):
    _, ids = released(org, owner, 30)

    def queries(chunk):
        with CaptureQueriesContext(connection) as captured:
            assert bulksend.messages_send(chunk) == {"sent": len(chunk)}
        return len(captured)

    small, large = queries(ids[:10]), queries(ids[10:30])
    assert large - small == 10  # each further message costs one statement, its own store
    assert small <= 25
    assert len(backend.outbox) == 30
    assert sorted(m["to"] for m in backend.outbox) == sorted(
        Message.objects.filter(pk__in=ids).values_list("to_number", flat=True)
    )
    sent = Message.objects.filter(pk__in=ids)
    assert sent.filter(dispatch="submitted", status="queued").exclude(provider_sid=None).count()
    assert sent.filter(dispatch="submitted", status="queued").count() == 30
    assert not sent.filter(sent_at=None).exists()
    # A redelivered chunk (a worker lost after its sends) sends nothing again.
    assert bulksend.messages_send(ids[:10]) == {}
    assert len(backend.outbox) == 30


def test_a_number_that_opted_out_after_the_release_is_skipped(org, owner, backend):
    _, ids = released(org, owner, 5)
    stopped = Message.objects.get(pk=ids[2])
    NumberState.objects.of(org=org, phone=stopped.to_number).opt_out(
        reason=OptOutReason.STOP_KEYWORD
    )

    assert bulksend.messages_send(ids) == {"sent": 4, "skipped": 1}
    stopped.refresh_from_db()
    assert (stopped.status, stopped.skip_reason, stopped.dispatch) == (
        "skipped",
        "opted_out",
        "done",
    )
    assert stopped.to_number not in [m["to"] for m in backend.outbox]


def test_a_stop_applied_while_a_chunk_sends_is_honoured_by_its_later_messages(
    org, owner, backend, monkeypatch
):
    """The checks' answer is at most FRESH_FOR old when a message goes out."""
    _, ids = released(org, owner, 6)
    late = Message.objects.get(pk=ids[4])
    accept, ticks = backend.send, iter(range(1000))

    def send(**kwargs):
        if len(backend.outbox) == 2:  # the STOP comes in while the chunk is under way
            NumberState.objects.of(org=org, phone=late.to_number).opt_out(
                reason=OptOutReason.STOP_KEYWORD
            )
        return accept(**kwargs)

    monkeypatch.setattr(backend, "send", send)
    # Each reading of the clock is a second later: every send asks again.
    outcome = bulksend.messages_send(ids, clock=lambda: float(next(ticks)))

    assert outcome == {"sent": 5, "skipped": 1}
    late.refresh_from_db()
    assert late.skip_reason == "opted_out"


def test_the_error_that_trips_the_breaker_stops_the_rest_of_its_chunk(
    org, owner, backend, monkeypatch
):
    broadcast, ids = released(org, owner, 30)
    calls = []

    def refuse(*, to, **kwargs):
        calls.append(to)
        raise SendError("Twilio 30034", code=30034, http_status=400)

    monkeypatch.setattr(backend, "send", refuse)
    assert bulksend.messages_send(ids[:10]) == {"failed": 10}
    outcome = bulksend.messages_send(ids[10:30])

    assert outcome == {"failed": 10, "held": 10}
    assert len(calls) == 20
    messages = Message.objects.filter(broadcast=broadcast)
    assert messages.filter(dispatch="held", status="pending").count() == 10
    broadcast.refresh_from_db()
    assert (broadcast.state, broadcast.hold_reason) == ("held", breaker.SENDER_HOLD)


def test_a_transient_failure_sends_that_message_again_on_its_own_and_the_rest_go_out(
    org, owner, backend
):
    _, ids = released(org, owner, 4)
    backend.fail_with.append(SendError("busy", http_status=503, transient=True))

    outcome = bulksend.messages_send(ids)

    # The retry ran at once (tasks run in the caller here) and went through.
    assert outcome == {"retry later": 1, "sent": 3}
    assert len(backend.outbox) == 4
    first = Message.objects.get(pk=ids[0])
    assert (first.dispatch, first.attempts) == ("submitted", 2)


def test_a_canceled_broadcasts_claimed_chunk_sends_nothing(org, owner, backend):
    broadcast, ids = released(org, owner, 3)
    Broadcast.objects.filter(pk=broadcast.pk).update(state=Broadcast.State.CANCELED)
    assert bulksend.messages_send(ids) == {"canceled": 3}
    assert backend.outbox == []


def test_each_thread_keeps_one_twilio_client_until_the_settings_change(settings):
    settings.TWILIO_BASE_URL = "http://127.0.0.1:9"
    first, again = TwilioBackend().client, TwilioBackend().client
    assert first is again
    elsewhere = []
    thread = threading.Thread(target=lambda: elsewhere.append(TwilioBackend().client))
    thread.start()
    thread.join()
    assert elsewhere[0] is not first
    settings.TWILIO_AUTH_TOKEN = "another-token"
    assert TwilioBackend().client is not first


def test_a_chunks_verdicts_agree_with_the_single_recipient_checks(org, owner, backend):
    """The chunk's statement is built once (on PostgreSQL) and reused with its ids and time:
    it must give every number the verdict `check_number` gives it, run after run."""
    _, ids = released(org, owner, 8)
    phones = dict(Message.objects.filter(pk__in=ids).values_list("pk", "to_number"))
    now = timezone.now()
    NumberState.objects.of(org=org, phone=phones[ids[0]]).opt_out(reason=OptOutReason.STOP_KEYWORD)
    NumberState.objects.of(org=org, phone=phones[ids[1]]).pause(
        until=now + timedelta(days=1), by=owner
    )
    NumberState.objects.of(org=org, phone=phones[ids[2]]).pause(
        until=now + timedelta(hours=1), by=owner
    )
    NumberState.objects.filter(organization=org, phone=phones[ids[2]]).update(
        paused_until=now - timedelta(minutes=1)  # a pause that has just ended
    )
    NumberState.objects.of(org=org, phone=phones[ids[3]]).mark_invalid(by=owner)
    NumberFacts.objects.update_or_create(phone=phones[ids[4]], defaults={"line_type": "landline"})
    NumberFacts.objects.update_or_create(
        phone=phones[ids[5]], defaults={"errors_since_heartbeat": 9, "last_attempt_at": now}
    )
    messages = list(Message.objects.filter(pk__in=ids).select_related("organization"))
    for moment in (now, now + timedelta(hours=2)):  # the same statement, later
        verdicts = bulksend._verdicts(messages, moment)
        expected = {
            m.pk: eligibility.check_number(org=org, phone=m.to_number, now=moment, broadcast=True)
            for m in messages
        }
        assert verdicts == expected
    assert expected[ids[0]] == "opted_out" and expected[ids[4]] == "landline"
    assert expected[ids[2]] is None and expected[ids[7]] is None


def test_the_last_second_of_calls_holds_at_most_the_senders_limit(settings):
    settings.REDIS_URL = ""
    assert [pacing.window_limit(rate) for rate in (1, 3, 10, 100)] == [1, 3, 10, 98]
    assert [pacing.admit("sender-admit", 5) for _ in range(5)] == [0.0] * 5
    wait = pacing.admit("sender-admit", 5)
    assert 0.9 < wait <= pacing.WINDOW  # until the first call of the window leaves it
    assert pacing.admit("sender-admit", 5, call="again") > 0.9  # asking again changes nothing


def test_a_call_that_goes_late_counts_in_the_second_it_goes(settings, monkeypatch):
    """The HTTP layer tells pacing when the call was written: a call held up between its
    admission and its writing is counted when it was written."""
    settings.REDIS_URL = ""
    monkeypatch.setattr(pacing, "LATE_ANSWER", 60.0)
    pacing.wait_for_slot("sender-went", 5, sleep=lambda seconds: None)
    ((first, name),) = pacing._local_calls["sender-went"]
    pacing.call_went()  # written in time: the record stays
    assert list(pacing._local_calls["sender-went"]) == [(first, name)]
    monkeypatch.setattr(pacing, "LATE_ANSWER", 0.001)
    pacing.wait_for_slot("sender-went", 5, sleep=lambda seconds: None)
    ((_, second),) = list(pacing._local_calls["sender-went"])[1:]
    time_module.sleep(0.005)  # the thread was held up before writing
    pacing.call_went()
    at, moved = pacing._local_calls["sender-went"][-1]
    assert moved == second and at >= first + 0.005
    pacing.call_went()  # nothing admitted since: nothing moves
    assert pacing._local_calls["sender-went"][-1] == (at, moved)


def test_a_worker_that_wakes_late_does_not_crowd_the_next_second(settings):
    """Four workers take slots of a 20 msg/s sender; one of them wakes 300 ms late from every
    other wait. Without the check at call time its calls would bunch with the next ones."""
    settings.REDIS_URL = ""
    calls, lock = [], threading.Lock()

    def worker(late):
        for n in range(8):
            extra = 0.3 if late and n % 2 else 0.0
            pacing.wait_for_slot(
                "sender-late", 20, sleep=lambda s, e=extra: time_module.sleep(s + e)
            )
            with lock:
                calls.append(time_module.monotonic())

    threads = [threading.Thread(target=worker, args=(n == 0,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls.sort()
    busiest = max(sum(1 for t in calls if start <= t < start + 1.0) for start in calls)
    assert len(calls) == 32
    assert busiest <= pacing.window_limit(20)


def test_on_twilio_the_pace_ends_in_the_http_layer_and_hears_when_the_call_was_written(
    settings, monkeypatch
):
    """The wait for the sender's pace runs once the request is built, right before it is
    written; pacing hears when it was written; the stand-in stamps it as its socket got it."""
    from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

    fake = FakeTwilio().start()
    try:
        settings.SMS_BACKEND = "twilio"
        settings.TWILIO_BASE_URL = fake.url
        settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = ACCOUNT_SID, AUTH_TOKEN
        settings.TWILIO_TIMEOUT = 2
        events = []
        monkeypatch.setattr(pacing, "call_went", lambda: events.append(("went", fake.attempts)))
        backend = get_backend()
        paced_at = []

        def pace():
            events.append(("pace", list(fake.attempts)))
            paced_at.append(time_module.monotonic())

        result = send_paced(
            backend,
            pace,
            to="+12125550100",
            from_="+14155550199",
            body="Pool closes at 6.",
            status_callback="https://reachable.example.com/hooks/status",
        )
        assert result.sid.startswith("SM")
        assert [kind for kind, _ in events] == ["pace", "went"]
        assert events[0][1] == []  # nothing had reached Twilio when the pace ended
        (attempt,) = fake.attempts
        assert paced_at[0] <= attempt.at <= time_module.monotonic()
        events.clear()
        backend.fetch(result.sid)  # no pace pending: the connection tells pacing all the same
        assert [kind for kind, _ in events] == ["went"]
    finally:
        fake.stop()
