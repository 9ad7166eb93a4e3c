"""The pipeline through a real Celery worker process, PostgreSQL and Redis (SPEC §5–§6).

Each test starts its own Redis on a free loopback port and a real worker
(`celery -A config worker --pool prefork -c 2`) on the test database, so faults can be injected
without touching the shared services: a worker killed with SIGKILL in the middle of a send, a
Redis stopped (refusing connections) or frozen (accepting them and never answering) while
Twilio's callbacks keep arriving. Rows are committed (transactional_db) so that the worker sees
them. The simulator is the SMS backend: it sends its signed callbacks through the webhook.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.db import connection
from django.test import Client
from django.utils import timezone

from config.celery import app as celery_app
from config.celery import enqueue
from conversations import services, tasks
from conversations.models import Message, MessageEvent
from tests.factories import make_contact, make_message, make_org, make_sender
from tests.twilio_requests import (
    INBOUND_PATH,
    STATUS_PATH,
    inbound_params,
    new_sid,
    post_signed,
    status_params,
)

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
AUTH_TOKEN = "worker-integration-auth-token"
PUBLIC_BASE_URL = "http://127.0.0.1:8000"
# The simulator's plan: 555-0100…0149 are mobiles that get "sent", then "delivered".
MOBILE = "+12125550100"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout, interval=0.2):
    """Poll `condition` until it returns something true; returns it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


class PrivateRedis:
    """A throwaway redis-server on a loopback port: stopped, frozen and restarted at will."""

    def __init__(self, directory):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process = None

    def start(self):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        log = open(self.directory / f"redis-{self.port}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(command, cwd=self.directory, stdout=log, stderr=log)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        if not wait_until(lambda: self._answers(client), timeout=10, interval=0.05):
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    @staticmethod
    def _answers(client):
        with contextlib.suppress(redis.RedisError):
            return client.ping()
        return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case it was frozen
            self.process.terminate()
            self.process.wait(timeout=10)

    def freeze(self):
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self):
        self.process.send_signal(signal.SIGCONT)

    def client(self):
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)


def test_database_url():
    """The URL of pytest-django's test database, for a worker in another process."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{credentials}{host}:{db.get('PORT') or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


class Worker:
    """A real `celery -A config worker` process on the test database and a private Redis."""

    def __init__(self, redis_url, database_url, log_path):
        self.redis_url = redis_url
        self.database_url = database_url
        self.log_path = log_path
        self.process = None

    def start(self, timeout=60):
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"TASKS_IN_PROCESS", "TEST_SERVICES"}
        }
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            SMS_BACKEND="simulator",
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            PUBLIC_BASE_URL=PUBLIC_BASE_URL,
            SIMULATOR_CHAOS="0",
            DEBUG="1",
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        celery = ROOT / ".venv" / "bin" / "celery"
        command = [str(celery)] if celery.exists() else [sys.executable, "-m", "celery"]
        command += ["-A", "config", "worker", "-l", "info", "--pool", "prefork", "-c", "2"]
        command += ["-n", f"test-{uuid.uuid4().hex[:8]}@%h"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115
        # Its own process group: a SIGKILL takes the pool's children down with it.
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if not wait_until(self._ready, timeout=timeout, interval=0.2):
            self.stop()
            raise RuntimeError(f"the worker did not become ready:\n{self.log()}")

    def _ready(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited with {self.process.returncode}:\n{self.log()}")
        return " ready." in self.log()

    def log(self):
        return self.log_path.read_bytes()[self.offset :].decode(errors="replace")

    def kill(self):
        """SIGKILL the worker and its pool processes at once, as when a machine dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        # Pool processes that outlived their parent must not keep the test database open.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def _point_celery_at(url):
    """This process publishes to `url`: Celery read its broker URL once, at configuration."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    celery_app.conf.broker_url = url


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pipeline(settings, monkeypatch, private_redis):
    """This process set up as a web process of the stack: Redis, signed callbacks, simulator."""
    settings.REDIS_URL = private_redis.url
    settings.SMS_BACKEND = "simulator"
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    # Clients made for another test's Redis must not be reused.
    monkeypatch.setattr(tasks, "_redis_client", None)
    monkeypatch.setattr(tasks, "_last_request", 0.0)
    original = celery_app.conf.broker_url
    _point_celery_at(private_redis.url)
    yield private_redis
    _point_celery_at(original)


@pytest.fixture
def workers(transactional_db, pipeline, tmp_path):
    """Starts workers on demand (`workers.start()`); every one is stopped at the end."""

    class Workers:
        def __init__(self):
            self.started = []

        def start(self):
            worker = Worker(pipeline.url, test_database_url(), tmp_path / "worker.log")
            self.started.append(worker)
            worker.start()
            return worker

    manager = Workers()
    yield manager
    for worker in manager.started:
        worker.stop()


def outbound(throughput=10):
    org = make_org()
    sender = make_sender(org, phone_number="+14155550100", throughput=throughput)
    contact = make_contact(org, MOBILE)
    return org, sender, contact


def status_of(message):
    message.refresh_from_db()
    return message.status


def sids_called_back_for(message):
    """Every provider SID the carrier's callbacks named for our message id (?m=…).

    Each send makes a new SID at the provider; two SIDs would be one message sent twice.
    """
    events = MessageEvent.objects.filter(kind=MessageEvent.Kind.STATUS)
    return {
        event.payload.get("MessageSid")
        for event in events
        if (event.payload.get("_query") or {}).get("m") == str(message.pk)
    }


def test_a_message_is_sent_and_delivered_through_the_worker(workers):
    workers.start()
    org, sender, contact = outbound()

    message = services.message_create_outbound(org=org, contact=contact, body="See you at 6pm")

    # sent after about 2 s, delivered after about 6 s: callbacks signed and posted by the
    # simulator, stored by the webhook, processed by another task.
    assert wait_until(lambda: status_of(message) == Message.Status.DELIVERED, timeout=20), (
        f"message is {message.status}/{message.dispatch}:\n{workers.started[0].log()}"
    )
    assert message.dispatch == Message.Dispatch.DONE
    assert message.provider_sid.startswith("SM")
    assert message.carrier_done_at is not None
    assert sids_called_back_for(message) == {message.provider_sid}
    events = MessageEvent.objects.filter(message=message, kind=MessageEvent.Kind.STATUS)
    assert sorted(events.values_list("status", flat=True)) == ["delivered", "sent"]
    assert not events.filter(processed_at=None).exists()


def test_a_send_killed_mid_flight_is_reclaimed_and_sent_exactly_once(
    workers, pipeline, monkeypatch
):
    first = workers.start()
    org, sender, contact = outbound(throughput=1)
    # The sender's next free slot is a minute away: the task claims the message, then sleeps
    # in pacing, where the worker is killed.
    pace = pipeline.client()
    pace_key = f"reachable:pace:sender-{sender.pk}"
    seconds, micros = pace.time()
    pace.set(pace_key, str((seconds + 60) * 1_000_000 + micros))

    message = services.message_create_outbound(org=org, contact=contact, body="Class moved")
    claimed = wait_until(
        lambda: Message.objects.filter(pk=message.pk, dispatch=Message.Dispatch.CLAIMED).exists(),
        timeout=20,
    )
    assert claimed, first.log()
    time.sleep(0.5)
    first.kill()

    message.refresh_from_db()
    assert message.dispatch == Message.Dispatch.CLAIMED  # left behind by a dead worker
    assert message.provider_sid is None
    assert message.status == Message.Status.PENDING

    workers.start()
    pace.delete(pace_key)  # the dead worker's slot is over
    # The periodic sweeper, with claims counted as stale after one second instead of two
    # minutes: it marks the send's outcome unknown and has it reconciled before any re-send.
    monkeypatch.setattr(services, "CLAIM_TIMEOUT", timedelta(seconds=1))
    time.sleep(1.1)
    assert tasks.sweep_messages() == {"reclaimed": 1}

    assert wait_until(lambda: status_of(message) == Message.Status.DELIVERED, timeout=25), (
        f"message is {message.status}/{message.dispatch}:\n{workers.started[-1].log()}"
    )
    assert message.attempts == 2
    # Callbacks of a second send would come within the simulator's 6 s; give them time.
    time.sleep(2)
    assert sids_called_back_for(message) == {message.provider_sid}
    assert Message.objects.filter(conversation=message.conversation).count() == 1
    assert "not found; sending again" in workers.started[-1].log()


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_webhooks_are_stored_while_redis_is_down_and_processed_when_it_returns(
    workers, pipeline, fault
):
    workers.start()
    org, sender, contact = outbound()
    messages = [
        make_message(
            contact,
            sender,
            status=Message.Status.SENT,
            provider_sid=new_sid(),
            dispatch=Message.Dispatch.SUBMITTED,
            sent_at=timezone.now(),
        )
        for _ in range(10)
    ]
    if fault == "stopped":
        pipeline.stop()  # connections refused
    else:
        pipeline.freeze()  # connections accepted, never answered: only timeouts help

    client = Client()
    durations = []
    for message in messages:
        for status in ("sent", "delivered"):
            params = status_params(sid=message.provider_sid, status=status, to=MOBILE)
            started = time.perf_counter()
            response = post_signed(client, f"{STATUS_PATH}?m={message.pk}", params)
            durations.append(time.perf_counter() - started)
            assert response.status_code == 204
        time.sleep(0.05)
    reply = inbound_params(to=sender.phone_number, from_=MOBILE, body="Thanks, see you then")
    started = time.perf_counter()
    response = post_signed(client, INBOUND_PATH, reply)
    durations.append(time.perf_counter() - started)
    assert response.status_code == 200
    assert max(durations) < 1.0, durations

    stored = MessageEvent.objects.filter(message=None)
    assert stored.filter(kind=MessageEvent.Kind.STATUS).count() == 20
    assert stored.filter(kind=MessageEvent.Kind.INBOUND).count() == 1
    assert not stored.exclude(processed_at=None).exists()
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}

    if fault == "stopped":
        pipeline.start()  # same port, empty: whatever was queued there is gone
    else:
        pipeline.thaw()
    # What the beat's "process-stored-events" entry does every 30 s, without the wait.
    assert enqueue("conversations.tasks.process_events") is not None

    def all_processed():
        return not MessageEvent.objects.filter(processed_at=None).exists()

    assert wait_until(all_processed, timeout=30), workers.started[0].log()
    outbound_statuses = Message.objects.filter(direction=Message.Direction.OUTBOUND)
    assert set(outbound_statuses.values_list("status", flat=True)) == {"delivered"}
    assert MessageEvent.objects.filter(kind=MessageEvent.Kind.STATUS).count() == 20
    received = Message.objects.get(direction=Message.Direction.INBOUND)
    assert received.body == "Thanks, see you then"
    assert received.conversation == messages[0].conversation
