"""Fault tests on a stack of the product's own processes: a PostgreSQL cluster and a Redis the
test starts on loopback ports of their own (never the shared services), a real Celery worker,
gunicorn, and a Twilio that fails on cue (tests/fake_twilio.py).

- Twilio answers 500s (before and after it took the message), 503s, 429s and not at all;
- PostgreSQL crashes (immediate stop: connections cut, recovery on start) while signed callbacks,
  inbound messages and sends are under way;
- a worker is killed with SIGKILL in the middle of a send (waiting for its pace, or after Twilio
  took the message and before its answer came);
- Redis is stopped (connections refused) or frozen (accepted, never answered) while Twilio's
  callbacks keep arriving.

Each ends with nothing lost and no message sent twice: the fake Twilio counts what each number
really received.
"""

import itertools
import threading
import time
import uuid
from urllib.parse import urlencode

import psycopg
import pytest
import requests
from twilio.request_validator import RequestValidator

from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.stack import (
    PostgresMissing,
    PrivatePostgres,
    Web,
    Worker,
    base_env,
    manage,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SENDERS = itertools.count(100)  # a number of its own for each test's sender
STATUS_PATH = "/webhooks/twilio/status/"
INBOUND_PATH = "/webhooks/twilio/inbound/"


@pytest.fixture(scope="module")
def postgres():
    """One private cluster for the module, migrated once; each test makes its own org."""
    try:
        server = PrivatePostgres()
    except PostgresMissing as missing:
        pytest.fail(str(missing), pytrace=False)
    try:
        server.init()
        manage(base_env(DATABASE_URL=server.url, DEBUG="1"), "migrate", "--noinput", timeout=300)
        yield server
    finally:
        server.destroy()


@pytest.fixture
def twilio():
    fake = FakeTwilio(hang_seconds=3).start()
    yield fake
    fake.stop()


class Stack:
    """The product's processes on the private services; stopped at the end of the test."""

    def __init__(self, postgres, redis_server, twilio, directory):
        self.postgres, self.twilio, self.directory = postgres, twilio, directory
        self.processes = []
        self.sender = f"+1415555{next(SENDERS):04d}"
        self.web = Web({}, directory / "web.log")
        self.env = base_env(
            DATABASE_URL=postgres.url,
            REDIS_URL=redis_server.url,
            SMS_BACKEND="twilio",
            TWILIO_BASE_URL=twilio.url,
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_TIMEOUT=1,
            PUBLIC_BASE_URL=self.web.url,
            DEBUG="0",
            SECRET_KEY="fault-tests-" + "x" * 50,
            ALLOWED_HOSTS="127.0.0.1",
            SECURE_SSL_REDIRECT="0",
        )
        self.web.env = dict(self.env, **{k: v for k, v in self.web.env.items()})

    def start_worker(self):
        worker = Worker(self.env, self.directory / "worker.log")
        self.processes.append(worker)
        return worker.start()

    def start_web(self):
        self.processes.append(self.web)
        return self.web.start()

    def python(self, code):
        """Run `code` in `manage.py shell` on the stack; it prints JSON as its last line."""
        return manage(self.env, code=code)

    def rows(self, sql, params=()):
        with psycopg.connect(self.postgres.url.replace("postgres://", "postgresql://")) as conn:
            return conn.execute(sql, params).fetchall()

    def logs(self, tail=6000):
        """The processes' output (the last `tail` characters of each; None for all of it)."""
        parts = []
        for process in self.processes:
            text = process.log()
            parts.append(f"--- {process.log_path.name}\n{text[-tail:] if tail else text}")
        return "\n".join(parts)

    def stop(self):
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def stack(postgres, private_redis, twilio, tmp_path):
    """The product on the private services (stopped at the end): start_web(), start_worker()."""
    running = Stack(postgres, private_redis, twilio, tmp_path)
    yield running
    running.stop()


SETUP = """
import json, uuid
from django.db import transaction
from contacts.models import Contact, Organization
from conversations import sending
from conversations.models import Message, Sender
from tests.factories import make_contact, make_message
org = Organization.objects.create(name="Fault Club", slug="fault-" + uuid.uuid4().hex[:8])
sender = Sender.objects.create(organization=org, phone_number=%(sender)r, throughput=%(rate)d)
out = {"org": org.pk, "sent": [], "queued": [], "pace_key": f"reachable:pace:sender-{sender.pk}"}
if %(hold_pace)d:  # the sender's next free slot is that many seconds away
    import redis
    from django.conf import settings
    pace = redis.Redis.from_url(settings.REDIS_URL)
    seconds, micros = pace.time()
    pace.set(out["pace_key"], str((seconds + %(hold_pace)d) * 1_000_000 + micros))
for to in %(sent)r:
    contact = make_contact(org, to)
    message = make_message(contact, sender, status="sent", dispatch="submitted",
                           provider_sid="SM" + uuid.uuid4().hex)
    out["sent"].append({"id": message.pk, "sid": message.provider_sid, "to": to})
with transaction.atomic():
    for to in %(queued)r:
        contact = make_contact(org, to)
        message = sending.message_create_outbound(org=org, contact=contact, body="See you at 6")
        out["queued"].append({"id": message.pk, "to": to})
print(json.dumps(out))
"""


def numbers(first, count):
    return [f"+1212555{first + n:04d}" for n in range(count)]


def setup_messages(stack, *, sent=(), queued=(), rate=50, hold_pace=0):
    code = SETUP % {
        "sender": stack.sender,
        "rate": rate,
        "sent": list(sent),
        "queued": list(queued),
        "hold_pace": hold_pace,
    }
    return stack.python(code)


def messages_by_id(stack, ids):
    rows = stack.rows(
        "SELECT id, status, dispatch, provider_sid, attempts FROM conversations_message "
        "WHERE id = ANY(%s)",
        (list(ids),),
    )
    return {row[0]: row[1:] for row in rows}


def assert_each_sent_exactly_once(stack, queued):
    """Every queued message was taken by Twilio exactly once, and we hold that message's SID."""
    states = messages_by_id(stack, [m["id"] for m in queued])
    for message in queued:
        created = stack.twilio.created_for(message["to"])
        assert len(created) == 1, (message, created, stack.twilio.attempts_for(message["to"]))
        status, dispatch, sid, _attempts = states[message["id"]]
        assert (sid, dispatch, status) == (created[0]["sid"], "submitted", "queued"), message


# Twilio answers 500s, 429s and not at all ------------------------------------------------------


def test_a_twilio_that_answers_500s_429s_and_nothing_takes_every_message_once(stack, twilio):
    faults = {
        "429,429": ["429", "429"],
        "500": ["500"],
        "500 after create": ["500-after-create"],
        "503,500": ["503", "500"],
        "no answer": ["hang"],
        "no answer after create": ["hang-after-create"],
        "none": [],
    }
    tos = dict(zip(faults, numbers(100, len(faults)), strict=True))
    for name, to in tos.items():
        twilio.fail(to, *faults[name])
    stack.start_worker()

    setup = setup_messages(stack, queued=list(tos.values()))
    ids = [m["id"] for m in setup["queued"]]

    def all_submitted():
        return all(row[1] == "submitted" for row in messages_by_id(stack, ids).values())

    assert wait_until(all_submitted, timeout=90, interval=0.5), (
        messages_by_id(stack, ids),
        stack.logs(),
    )
    assert_each_sent_exactly_once(stack, setup["queued"])
    attempts = {m["to"]: messages_by_id(stack, [m["id"]])[m["id"]][3] for m in setup["queued"]}
    # What each number saw at Twilio: the faults, then one create that went through, except
    # where Twilio took the message before failing (found by the lookup, never sent again).
    for name, to in tos.items():
        seen = [a.fault for a in twilio.attempts_for(to)]
        took_it_anyway = faults[name] and faults[name][-1].endswith("after-create")
        expected = faults[name] if took_it_anyway else [*faults[name], ""]
        assert seen == expected, (name, seen)
        assert attempts[to] == len(expected), (name, attempts[to])
    log = stack.logs(tail=None)
    assert "not found; sending again" in log  # 500 before create, no answer: looked for first
    assert "found as SM" in log  # 500 after create, no answer after create: adopted


# PostgreSQL crashes under load ------------------------------------------------------------------


class CallbackLoad:
    """Twilio's side: signed callbacks and inbound messages posted from threads, each retried
    until it gets a 2xx (Twilio retries a 5xx or a dropped connection: #rc=5&rp=all)."""

    def __init__(self, base_url, requests_to_send, concurrency=4, pause=0.25, give_up_after=90):
        self.base_url = base_url
        self.pending = list(requests_to_send)
        self.lock = threading.Lock()
        self.answers = []  # (status or exception name) of every try
        self.delivered = 0
        self.failed = []
        self.concurrency, self.pause, self.give_up_after = concurrency, pause, give_up_after
        self.threads = []

    def start(self):
        for _ in range(self.concurrency):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self, timeout):
        for thread in self.threads:
            thread.join(timeout)

    def _run(self):
        session = requests.Session()
        while True:
            with self.lock:
                if not self.pending:
                    return
                path, params = self.pending.pop(0)
            self._post_until_accepted(session, path, params)
            time.sleep(self.pause)

    def _post_until_accepted(self, session, path, params):
        url = self.base_url + path
        headers = {
            "X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, params),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        deadline = time.monotonic() + self.give_up_after
        while time.monotonic() < deadline:
            try:
                response = session.post(url, data=urlencode(params), headers=headers, timeout=5)
                answer = response.status_code
            except requests.RequestException as exc:
                answer = type(exc).__name__
                session = requests.Session()
            with self.lock:
                self.answers.append(answer)
            if isinstance(answer, int) and 200 <= answer < 300:
                with self.lock:
                    self.delivered += 1
                return
            time.sleep(0.3)
        with self.lock:
            self.failed.append((path, params))


def status_form(message, status, sender):
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": sender,
        "MessageSid": message["sid"],
        "MessageStatus": status,
        "SmsSid": message["sid"],
        "SmsStatus": status,
        "To": message["to"],
    }


def inbound_form(from_, body, sender):
    sid = "SM" + uuid.uuid4().hex
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": from_,
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": sender,
        "NumMedia": "0",
    }


SWEEP = """
import json
from datetime import timedelta
from conversations import reconciliation, tasks
# What the beat does every minute, with claims counted stale after 2 s instead of 2 minutes.
reconciliation.CLAIM_TIMEOUT = timedelta(seconds=2)
swept = tasks.sweep_messages()
processed = tasks.process_events()
print(json.dumps({"swept": swept, "processed": str(processed)}))
"""


def test_postgres_crashing_under_load_loses_nothing_and_sends_nothing_twice(
    stack, postgres, twilio
):
    setup = setup_messages(stack, sent=numbers(200, 30), queued=numbers(300, 20), rate=5)
    stack.start_web()
    stack.start_worker()  # the 20 queued sends start: 5 a second, about 4 s

    callbacks = [
        (f"{STATUS_PATH}?m={message['id']}", status_form(message, status, stack.sender))
        for status in ("sent", "delivered")
        for message in setup["sent"]
    ]
    replies = [(INBOUND_PATH, inbound_form(m["to"], f"Thanks {n}", stack.sender)) for n, m in
               enumerate(setup["sent"][:10])]  # fmt: skip
    load = CallbackLoad(stack.web.url, callbacks + replies)  # about 16 a second, 4.5 s
    load.start()
    time.sleep(1.0)
    postgres.crash()  # mid-load: connections cut, in-flight transactions lost
    time.sleep(2.0)
    postgres.start()  # recovery; the web and the worker reconnect on their own
    load.join(timeout=120)
    assert load.failed == [], f"callbacks never accepted: {load.failed[:3]}\n{stack.logs()}"
    assert load.delivered == len(callbacks) + len(replies)
    answers = set(load.answers)
    assert answers & {503, "ConnectionError"}, "the crash came after the load was over"
    assert 500 not in answers, (answers, stack.logs())
    assert answers <= {200, 204, 503, "ConnectionError", "ReadTimeout"}, answers

    # What the beat would do: sends claimed when the database went away are reconciled.
    time.sleep(2.5)
    stack.python(SWEEP)
    queued_ids = [m["id"] for m in setup["queued"]]

    def settled():
        events = stack.rows(
            "SELECT count(*) FROM conversations_messageevent WHERE processed_at IS NULL"
        )
        states = messages_by_id(stack, queued_ids).values()
        return events[0][0] == 0 and all(row[1] == "submitted" for row in states)

    if not wait_until(settled, timeout=30, interval=0.5):
        stack.python(SWEEP)  # a beat tick later
    assert wait_until(settled, timeout=60, interval=0.5), (
        messages_by_id(stack, queued_ids),
        stack.logs(),
    )

    # Every callback stored once and applied; every reply stored and routed.
    sent_ids = [m["id"] for m in setup["sent"]]
    statuses = {row[0] for row in messages_by_id(stack, sent_ids).values()}
    assert statuses == {"delivered"}
    stored = stack.rows(
        "SELECT kind, count(*) FROM conversations_messageevent "
        "WHERE provider_sid = ANY(%s) OR payload->>'To' = %s GROUP BY kind",
        ([m["sid"] for m in setup["sent"]], stack.sender),
    )
    assert dict(stored) == {"inbound": len(replies), "status": len(callbacks)}
    received = stack.rows(
        "SELECT count(*) FROM conversations_message WHERE direction = 'inbound' AND "
        "organization_id = %s",
        (setup["org"],),
    )
    assert received[0][0] == len(replies)
    assert_each_sent_exactly_once(stack, setup["queued"])


# A worker killed in the middle of a send --------------------------------------------------------


@pytest.mark.parametrize("moment", ["waiting for its pace", "after Twilio took the message"])
def test_a_send_killed_mid_flight_is_reconciled_and_sent_exactly_once(
    stack, twilio, private_redis, moment
):
    [to] = numbers(400, 1)
    if moment == "after Twilio took the message":
        twilio.fail(to, "hang-after-create")
        twilio.hang_seconds = 60  # the worker dies waiting for the answer
        stack.env["TWILIO_TIMEOUT"] = "60"
    first = stack.start_worker()
    hold = 60 if moment == "waiting for its pace" else 0
    setup = setup_messages(stack, queued=[to], rate=1, hold_pace=hold)
    [message] = setup["queued"]

    def state():
        return messages_by_id(stack, [message["id"]])[message["id"]]

    if hold:
        assert wait_until(lambda: state()[1] == "claimed", timeout=20), stack.logs()
        time.sleep(0.5)  # asleep in pacing, a minute from its slot
    else:
        assert wait_until(lambda: twilio.attempts_for(to), timeout=20), stack.logs()
    first.kill()
    status, dispatch, sid, attempts = state()
    assert (status, dispatch, sid, attempts) == ("pending", "claimed", None, 1)

    stack.env["TWILIO_TIMEOUT"] = "1"
    stack.start_worker()
    private_redis.client().delete(setup["pace_key"])  # the dead worker's slot is over
    time.sleep(2.1)
    assert stack.python(SWEEP)["swept"] == {"reclaimed": 1}
    assert wait_until(lambda: state()[1] == "submitted", timeout=30), stack.logs()
    assert_each_sent_exactly_once(stack, setup["queued"])
    log = stack.logs(tail=None)
    if hold:  # Twilio never saw it: looked for, not found, sent
        assert [a.fault for a in twilio.attempts_for(to)] == [""]
        assert "not found; sending again" in log
        assert state()[3] == 2
    else:  # Twilio had it: adopted, never sent again
        assert [a.fault for a in twilio.attempts_for(to)] == ["hang-after-create"]
        assert "found as SM" in log
        assert state()[3] == 1


# Redis stopped or frozen while callbacks arrive -------------------------------------------------


PROCESS = """
import json
from config.celery import enqueue
# What the beat's "process-stored-events" entry does every 30 s, without the wait.
print(json.dumps({"enqueued": enqueue("conversations.tasks.process_events") is not None}))
"""


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_webhooks_are_stored_while_redis_is_down_and_processed_when_it_returns(
    stack, private_redis, fault
):
    setup = setup_messages(stack, sent=numbers(500, 10))
    stack.start_web()
    stack.start_worker()
    session = requests.Session()
    # Every web worker has stored a message (to a number that is none of ours, applied at once)
    # while Redis was up: a worker's first database write is not what is timed below. Then the
    # worker is idle: a task it held when the broker vanished would make kombu's restore of
    # unacknowledged messages fail, and the worker stop (its supervisor restarts it).
    url = stack.web.url + INBOUND_PATH
    for _ in range(8):
        params = inbound_form("+12125550999", "warm-up", "+15005550006")
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        answer = session.post(url, data=params, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200
    warm = "SELECT count(*) FROM conversations_messageevent WHERE processed_at IS NULL"
    assert wait_until(lambda: stack.rows(warm)[0][0] == 0, timeout=30), stack.logs()
    time.sleep(1)
    if fault == "stopped":
        private_redis.stop()  # connections refused
    else:
        private_redis.freeze()  # connections accepted, never answered: only timeouts help

    forms = [
        (f"{STATUS_PATH}?m={message['id']}", status_form(message, status, stack.sender))
        for message in setup["sent"]
        for status in ("sent", "delivered")
    ]
    reply = inbound_form(setup["sent"][0]["to"], "Thanks, see you then", stack.sender)
    forms.append((INBOUND_PATH, reply))
    durations = []
    for path, params in forms:
        url = stack.web.url + path
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        started = time.perf_counter()
        response = session.post(url, data=params, headers={"X-Twilio-Signature": signature})
        durations.append(time.perf_counter() - started)
        assert response.status_code in (200, 204), (response.status_code, stack.logs())
    # Never hangs on a dead Redis: one short-timeout call per 200 ms at most.
    assert max(durations) < 1.0, durations

    ours = ([m["sid"] for m in setup["sent"]], stack.sender)
    where = "WHERE (provider_sid = ANY(%s) OR payload->>'To' = %s)"
    unprocessed = stack.rows(
        f"SELECT kind, count(*) FROM conversations_messageevent {where} "
        "AND processed_at IS NULL GROUP BY kind",
        ours,
    )
    assert dict(unprocessed) == {"status": 20, "inbound": 1}
    sent_ids = [m["id"] for m in setup["sent"]]
    assert {row[0] for row in messages_by_id(stack, sent_ids).values()} == {"sent"}

    if fault == "stopped":
        private_redis.start()  # same port, empty: whatever was queued there is gone
    else:
        private_redis.thaw()
    assert stack.python(PROCESS) == {"enqueued": True}

    def all_processed():
        rows = stack.rows(
            f"SELECT count(*) FROM conversations_messageevent {where} AND processed_at IS NULL",
            ours,
        )
        return rows[0][0] == 0

    assert wait_until(all_processed, timeout=30), stack.logs()
    assert {row[0] for row in messages_by_id(stack, sent_ids).values()} == {"delivered"}
    received = stack.rows(
        "SELECT body FROM conversations_message WHERE direction = 'inbound' AND "
        "organization_id = %s",
        (setup["org"],),
    )
    assert received == [("Thanks, see you then",)]
