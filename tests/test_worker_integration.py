"""The pipeline through a real Celery worker process, PostgreSQL and Redis (SPEC §5–§6).

The test starts its own Redis on a free loopback port and a real worker
(`celery -A config worker --pool prefork -c 2`) on the test database. Rows are committed
(transactional_db) so that the worker sees them. The simulator is the SMS backend: it sends its
signed callbacks through the webhook. The same stack under faults (a worker killed mid-send,
Redis stopped or frozen, PostgreSQL crashing, Twilio failing) is in test_faults.py.
"""

import pytest
from django.db import connection

from config.celery import app as celery_app
from conversations import sending
from conversations.models import Message, MessageEvent
from tests.factories import make_contact, make_org, make_sender
from tests.stack import Worker, base_env, database_url, point_celery_at, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

AUTH_TOKEN = "worker-integration-auth-token"
PUBLIC_BASE_URL = "http://127.0.0.1:8000"
# The simulator's plan: 555-0100…0149 are mobiles that get "sent", then "delivered".
MOBILE = "+12125550100"


@pytest.fixture
def pipeline(settings, monkeypatch, private_redis):
    """This process set up as a web process of the stack: Redis, signed callbacks, simulator."""
    settings.REDIS_URL = private_redis.url
    settings.SMS_BACKEND = "simulator"
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    original = celery_app.conf.broker_url
    point_celery_at(private_redis.url)
    yield private_redis
    point_celery_at(original)


@pytest.fixture
def workers(transactional_db, pipeline, tmp_path):
    """Starts workers on demand (`workers.start()`); every one is stopped at the end."""

    class Workers:
        def __init__(self):
            self.started = []

        def start(self):
            env = base_env(
                DATABASE_URL=database_url(connection),
                REDIS_URL=pipeline.url,
                SMS_BACKEND="simulator",
                TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                PUBLIC_BASE_URL=PUBLIC_BASE_URL,
                SIMULATOR_CHAOS="0",
                DEBUG="1",
            )
            worker = Worker(env, tmp_path / "worker.log")
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

    message = sending.message_create_outbound(org=org, contact=contact, body="See you at 6pm")

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
