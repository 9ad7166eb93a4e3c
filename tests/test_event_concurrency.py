"""Every stored webhook is applied exactly once while two workers apply events at once (SPEC §6).

Production shape: gunicorn receives signed callbacks and inbound replies fired from many
threads in random order, duplicated (some replayed with a fresh idempotency token, which the
signature does not cover); two Celery worker processes (two pool processes each) apply them
on PostgreSQL at the same time. Rounds follow each other without waiting for processing: a
START of round 2 arrives after the STOP of round 1 and must be applied after it. The workers
are held while the first two rounds come in (a backlog, as after an outage or a big send), and
their database sessions are cut now and then while they catch up (SessionKiller).
"""

import contextlib
import os
import random
import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import psycopg
import pytest
import requests
from django.db import connection
from twilio.request_validator import RequestValidator

from config.celery import app as celery_app
from conversations.models import Message, MessageEvent
from deliverability.models import NumberState
from tests.factories import make_contact, make_message, make_org, make_sender
from tests.stack import Web, Worker, base_env, database_url, point_celery_at, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

AUTH_TOKEN = "event-concurrency-auth-token"
SENDER = "+14155550100"
MESSAGES = 300
THREADS = 12
WORKER_SESSIONS = "reachable-worker"

FIRST_FINALS = [("delivered", None)] * 6 + [("undelivered", 30003), ("failed", 30005)]


@pytest.fixture
def stack(transactional_db, private_redis, tmp_path, settings):
    """gunicorn (2 processes) and two Celery workers (2 pool processes each)."""
    original = celery_app.conf.broker_url
    settings.REDIS_URL = private_redis.url
    point_celery_at(private_redis.url)
    env = base_env(
        DATABASE_URL=database_url(connection),
        REDIS_URL=private_redis.url,
        SMS_BACKEND="locmem",
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        DEBUG="1",
    )
    web = Web(env, tmp_path / "web.log", workers=2)
    web.env["PUBLIC_BASE_URL"] = web.url
    # The workers' database sessions are named, for the test to cut them (SessionKiller).
    worker_env = dict(env, DATABASE_URL=f"{env['DATABASE_URL']}?application_name={WORKER_SESSIONS}")
    workers = [Worker(worker_env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    started = []
    try:
        for process in [web, *workers]:
            process.start()
            started.append(process)
        yield web, workers
    finally:
        for process in started:
            process.stop()
        point_celery_at(original)


@contextlib.contextmanager
def held(workers):
    """The workers stopped (SIGSTOP) for the block: what comes in meanwhile waits for them."""
    for worker in workers:
        os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in workers:
            os.killpg(worker.process.pid, signal.SIGCONT)


class SessionKiller:
    """Cuts the workers' database sessions now and then while events are applied, as a
    failover, a restarted pooler or an idle-session timeout does: the events they were applying
    are postponed and applied later, still once each and in the order received."""

    def __init__(self, cuts, every=(0.05, 0.3), seed=3):
        self.cuts, self.every = cuts, every
        self.rng = random.Random(seed)
        self.cut = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=10)

    def _run(self):
        with psycopg.connect(database_url(connection), autocommit=True) as admin:
            while self.cut < self.cuts and not self.stopping.wait(self.rng.uniform(*self.every)):
                # Sessions in a transaction: most often a reply being applied, after its claim.
                rows = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND xact_start IS NOT NULL",
                    [WORKER_SESSIONS],
                ).fetchall()
                self.cut += len(rows)


class Firer:
    """Posts signed webhooks to gunicorn from a pool of threads, in the order given."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.validator = RequestValidator(AUTH_TOKEN)
        self.local = threading.local()
        self.answers = []

    def _session(self):
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def post(self, request):
        path, params, token = request
        url = self.base_url + path
        headers = {
            "X-Twilio-Signature": self.validator.compute_signature(url, params),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if token:
            headers["I-Twilio-Idempotency-Token"] = token
        try:
            answer = self._session().post(url, data=urlencode(params), headers=headers, timeout=30)
        except requests.RequestException:
            return 0  # no answer
        return answer.status_code

    def fire(self, requests_):
        with ThreadPoolExecutor(THREADS) as pool:
            codes = list(pool.map(self.post, requests_))
        self.answers.extend(codes)
        return codes


def _status(message, status, code=None, token=None):
    params = {
        "AccountSid": "AC" + "1" * 32,
        "ApiVersion": "2010-04-01",
        "From": SENDER,
        "To": message.to_number,
        "MessageSid": message.provider_sid,
        "SmsSid": message.provider_sid,
        "MessageStatus": status,
        "SmsStatus": status,
    }
    if code:
        params["ErrorCode"] = str(code)
    return (f"/webhooks/twilio/status/?m={message.pk}", params, token or uuid.uuid4().hex)


def _inbound(phone, body):
    sid = "SM" + uuid.uuid4().hex
    params = {
        "AccountSid": "AC" + "1" * 32,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": phone,
        "To": SENDER,
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "NumSegments": "1",
        "NumMedia": "0",
    }
    return ("/webhooks/twilio/inbound/", params, uuid.uuid4().hex)


def _population():
    org = make_org("Concurrency Club", slug="concurrency-club")
    sender = make_sender(org, phone_number=SENDER, throughput=100)
    messages = []
    for n in range(MESSAGES):
        contact = make_contact(org, f"+1212555{n:04d}", first_name=f"M{n}")
        messages.append(
            make_message(
                contact,
                sender,
                status=Message.Status.QUEUED,
                provider_sid="SM" + uuid.uuid4().hex,
                dispatch=Message.Dispatch.SUBMITTED,
            )
        )
    return org, messages


def test_every_event_is_applied_once_by_two_workers_at_once(stack):
    web, workers = stack
    rng = random.Random(20261202)
    org, messages = _population()
    firer = Firer(web.url)
    phones = [m.to_number for m in messages]
    first_final, last_keyword = {}, {}
    expected_status_keys, expected_inbound = set(), 0

    # Round 1: sent + a final for every message, a STOP from every number; a tenth of the
    # callbacks replayed with a fresh idempotency token; all shuffled.
    round_1 = []
    for message in messages:
        final, code = rng.choice(FIRST_FINALS)
        first_final[message.pk] = final
        for status, error in (("sent", None), (final, code)):
            request = _status(message, status, error)
            round_1.append(request)
            expected_status_keys.add((message.provider_sid, status, error))
            if rng.random() < 0.1:
                round_1.append(_status(message, status, error))  # same callback, new token
        round_1.append(_inbound(message.to_number, "STOP"))
        last_keyword[message.to_number] = "STOP"
        expected_inbound += 1
    rng.shuffle(round_1)

    # Round 2: a START from a third of the numbers; a different, later final for a sixth of
    # the messages (the first final wins); duplicates of round 1's callbacks. Not from the
    # numbers whose message failed with 30005 (the number does not exist): that flags them
    # Invalid, and a START from an Invalid number is stored as blocked, not acted on, while a
    # START applied before the flag is honoured. Callbacks and replies are not ordered against
    # each other, so that START's outcome depends on which is applied first.
    flagged = {m.to_number for m in messages if first_final[m.pk] == "failed"}
    round_2 = []
    for phone in rng.sample([p for p in phones if p not in flagged], len(phones) // 3):
        round_2.append(_inbound(phone, "START"))
        last_keyword[phone] = "START"
        expected_inbound += 1
    for message in rng.sample(messages, len(messages) // 6):
        late = "undelivered" if first_final[message.pk] == "delivered" else "delivered"
        code = 30003 if late == "undelivered" else None
        round_2.append(_status(message, late, code))
        expected_status_keys.add((message.provider_sid, late, code))
    round_2 += [r for r in rng.sample(round_1, 100) if "status" in r[0]]
    rng.shuffle(round_2)

    # Round 3: STOP again from half of those who said START.
    restarted = [phone for phone, word in last_keyword.items() if word == "START"]
    round_3 = []
    for phone in rng.sample(restarted, len(restarted) // 2):
        round_3.append(_inbound(phone, "stop"))
        last_keyword[phone] = "STOP"
        expected_inbound += 1
    rng.shuffle(round_3)

    fired, refused = 0, []

    def fire(round_):
        nonlocal fired, refused
        codes = firer.fire(round_)
        fired += len(round_)
        refused += [code for code in codes if not 200 <= code < 300]

    with SessionKiller(cuts=20) as killer:
        with held(workers):
            fire(round_1)
            fire(round_2)
        fire(round_3)
        wait_until(lambda: killer.cut >= killer.cuts, timeout=60)
    assert fired >= 1000

    events = MessageEvent.objects.filter(kind__in=["status", "inbound"])
    settled = wait_until(lambda: not events.filter(processed_at=None).exists(), timeout=180)

    stored = list(events.values_list("kind", "provider_sid", "status", "error_code"))
    status_keys = [(sid, status, code) for kind, sid, status, code in stored if kind == "status"]
    errors = list(
        events.filter(outcome__startswith="error").values_list("kind", "status", "outcome")
    )
    states = dict(
        NumberState.objects.filter(organization=org).values_list("phone", "opt_out_reason")
    )
    # The last word of each number stands: every STOP applied, a later START after it.
    wrong_word = [
        (phone, word, states.get(phone))
        for phone, word in last_keyword.items()
        if (word == "STOP") != bool(states.get(phone))
    ]
    finals = dict(Message.objects.filter(pk__in=first_final).values_list("pk", "status"))
    wrong_final = {pk: (finals[pk], want) for pk, want in first_final.items() if finals[pk] != want}
    figures = {
        "fired": fired,
        "not 2xx": len(refused),
        "unapplied": events.filter(processed_at=None).count(),
        "status events stored": len(status_keys),
        "distinct callbacks": len(expected_status_keys),
        "inbound stored": sum(1 for kind, *_ in stored if kind == "inbound"),
        "inbound sent": expected_inbound,
        "worker sessions cut": killer.cut,
        "error outcomes": len(errors),
        # Replies are applied in the order received: none is ever found to come after a later one.
        "inbound applied as late": events.filter(outcome__startswith="stored (a later").count(),
        "last STOP/START not applied": len(wrong_word),
        "final status not the first final": len(wrong_final),
        "status events not linked": events.filter(kind="status", message=None).count(),
    }
    print("event concurrency:", figures)
    logs = "\n".join(worker.log()[-2000:] for worker in workers)
    assert settled, f"{figures}\n{logs}"
    assert figures["not 2xx"] == 0, (figures, sorted(set(refused)))
    # Every event stored once.
    assert set(status_keys) == expected_status_keys, figures
    assert figures["status events stored"] == figures["distinct callbacks"], figures
    assert figures["inbound stored"] == figures["inbound sent"], figures
    assert errors == [], (figures, errors[:5])
    assert wrong_word == [], (figures, wrong_word[:5])
    assert figures["inbound applied as late"] == 0, figures
    assert wrong_final == {}, figures
    assert figures["status events not linked"] == 0, figures
