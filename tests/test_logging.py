"""No log line of any process carries a whole phone number, and workers never stop logging.

The first tests pin what the mask catches and what it leaves alone. The stack tests run the
real processes (a Celery worker, gunicorn) on the test database and a private Redis, make them
log numbers the ways they really do (twilio's request log of a Lookup, a staff search, a task
that fails with a number in its exception) and read everything they printed.
"""

import logging
import re
import sys

import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from config.logfilters import MaskingFormatter, mask_numbers
from conversations import tasks
from conversations.models import Message
from tests.factories import make_contact, make_member, make_org, make_sender
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.stack import Web, Worker, base_env, database_url, manage, wait_until


@pytest.mark.parametrize(
    ("logged", "masked"),
    [
        ("sent to +16175550101", "sent to +1••••••••01"),
        (
            "GET /v2/PhoneNumbers/%2B16175550101?Fields=x",
            "GET /v2/PhoneNumbers/%2B1••••••••01?Fields=x",
        ),
        ("GET /contacts/?q=%2b16175550101 HTTP/1.1", "GET /contacts/?q=%2b1••••••••01 HTTP/1.1"),
        ("GET /contacts/?q=6175550101&page=2", "GET /contacts/?q=••••••••01&page=2"),
        ("lookups/16175550101", "lookups/•••••••••01"),
        ("?q=(617)%20555-0101", "?q=(•••)%20•••-••01"),
        ("?q=%28617%29+555-0101", "?q=%28•••%29+•••-••01"),
        ("?next=/contacts/%3Fq%3D%252B16175550101", "?next=/contacts/%3Fq%3D%252B1••••••••01"),
        ("?next=%3Fq%3D%2528617%2529%2B555-0101", "?next=%3Fq%3D%2528•••%2529%2B•••-••01"),
        ("row 3: (617) 555-0101", "row 3: (•••) •••-••01"),
        ("1-617-555-0101, 617.555.0101", "•-•••-•••-••01, •••.•••.••01"),
        ("+1 (617) 555-0101", "+1 (•••) •••-••01"),
        ("+44 20 7946 0958", "+4• •• •••• ••58"),
    ],
)
def test_it_masks_a_number_in_every_shape_it_is_logged_in(logged, masked):
    assert mask_numbers(logged) == masked


@pytest.mark.parametrize(
    "logged",
    [
        "2026-12-02 06:04:16,123 INFO celery.worker.consumer",
        '127.0.0.1 - - [02/Dec/2026:06:04:16 +0000] "GET /healthz HTTP/1.1" 200 2',
        "Task x[e3b0c442-98fc-1c14-9afb-4c8996fb9242] succeeded in 0.004417611999999999s",
        "Task x[ec086201-85d5-4fa2-b80c-481234563612] received",
        "Task x[12345678-1234-1234-1234-1234567890cc] raised unexpected",
        "status callback for SM1234567890abcdef1234567890abcdef",
        "imported 1234567 rows from 127.0.0.1:8000",
    ],
)
def test_it_leaves_times_ids_and_counts_alone(logged):
    assert mask_numbers(logged) == logged


def test_the_formatter_masks_the_exception_and_its_traceback():
    try:
        raise ValueError("row 7: could not parse +16175550101")
    except ValueError:
        record = logging.LogRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "import of %s failed",
            ("(617) 555-0102",),
            sys.exc_info(),
        )

    line = MaskingFormatter("%(levelname)s %(message)s").format(record)

    assert line.startswith("ERROR import of (•••) •••-••02 failed\nTraceback")
    assert "ValueError: row 7: could not parse +1••••••••01" in line
    assert "6175550101" not in line and "555-0102" not in line


def test_a_simulated_callback_leaves_the_logging_configuration_alone(db, settings):
    """The simulator posts its callbacks through this process's own WSGI application; building
    it must not configure Django, and its logging, a second time in the middle of a task."""
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    tasks._application.cache_clear()
    handler = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        status = tasks.post_in_process(
            "http://127.0.0.1:8000/webhooks/twilio/status/", {"MessageSid": "SM0"}, {}
        )
        assert status == 403  # unsigned: the whole stack ran
        assert handler in root.handlers
    finally:
        root.removeHandler(handler)


# The real processes --------------------------------------------------------------------------


def whole_numbers_in(log, numbers):
    """The `numbers` (ten digits each) that `log` spells out whole, in whatever shape.

    Separators and percent-escapes between digits are dropped first, so that "(617) 555-0101"
    and "%2B16175550101" are found too; a masked number keeps only its last two digits.
    """
    digits_only = re.sub(r"%(?:25)?[0-9A-Fa-f]{2}|[^0-9A-Za-z]", "", log)
    return [number for number in numbers if number in digits_only]


def e164_in(log):
    return re.findall(r"(?:\+|%2B)\d{10,}", log, flags=re.IGNORECASE)


@pytest.fixture
def fake_twilio():
    twilio = FakeTwilio().start()
    yield twilio
    twilio.stop()


@pytest.fixture
def processes():
    """Starts product processes on demand; every one is stopped at the end."""
    started = []

    def start(process):
        started.append(process)
        return process.start()

    yield start
    for process in reversed(started):
        process.stop()


def stack_env(private_redis, **settings):
    # DEBUG on: pages need no collected static files, and Django's defaults then add a console
    # handler of their own to the "django" logger, which must not print anything either.
    return base_env(
        DATABASE_URL=database_url(connection), REDIS_URL=private_redis.url, DEBUG="1", **settings
    )


def enqueue(env, calls):
    """Enqueue `calls` ((task path, argument) pairs) from another process; their task ids."""
    code = (
        "import importlib, json\n"
        f"calls = {calls!r}\n"
        "ids = []\n"
        "for path, argument in calls:\n"
        "    module, name = path.rsplit('.', 1)\n"
        "    ids.append(getattr(importlib.import_module(module), name).delay(argument).id)\n"
        "print(json.dumps(ids))\n"
    )
    return manage(env, code=code)


def finished(worker, task_ids):
    """Whether the worker logged the outcome of every task (in the pool process that ran it)."""
    log = worker.log()
    ends = (" succeeded in ", " raised unexpected: ")
    return all(any(f"[{tid}]{end}" in log for end in ends) for tid in task_ids)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_process_logs_a_whole_phone_number(private_redis, fake_twilio, processes, tmp_path):
    env = stack_env(
        private_redis,
        SMS_BACKEND="twilio",
        TWILIO_BASE_URL=fake_twilio.url,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
    )
    org = make_org()
    staff_user = make_member(org, username="frontdesk")
    # Hashed for gunicorn's settings (the tests' own fast hasher is not among them).
    staff_user.password = PBKDF2PasswordHasher().encode("pw", "logging", iterations=1000)
    staff_user.save(update_fields=["password"])
    worker = processes(Worker(env, tmp_path / "worker.log"))
    web = processes(Web(env, tmp_path / "web.log"))

    # A Lookup through twilio's client, which logs its request URL at INFO; a task that fails
    # with a number in its exception (a number where a message id belongs), E.164 and national.
    task_ids = enqueue(
        env,
        [
            ("deliverability.tasks.lookup_number", "+16175550101"),
            ("conversations.tasks.send_message", ["+16175550102"]),
            ("conversations.tasks.send_message", "(617) 555-0103"),
        ],
    )
    # Staff search for a number the ways it is typed and encoded, signed in or not.
    staff = requests.Session()
    login = staff.get(f"{web.url}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    signed_in = staff.post(
        f"{web.url}/accounts/login/",
        {"username": "frontdesk", "password": "pw", "csrfmiddlewaretoken": token},
        allow_redirects=False,
        timeout=10,
    )
    assert signed_in.status_code == 302
    for query in ["%2B16175550104", "6175550105", "(617)%20555-0106", "%28617%29+555-0107"]:
        assert staff.get(f"{web.url}/contacts/?q={query}", timeout=10).status_code == 200
    assert staff.get(f"{web.url}/conversations/?q=%2B16175550108", timeout=10).status_code == 200
    # Signed out, the search goes on to the login page, encoded once more in ?next=.
    for query in ["%2B16175550109", "%28617%29+555-0100"]:
        requests.get(f"{web.url}/contacts/?q={query}", timeout=10)

    assert wait_until(lambda: finished(worker, task_ids), timeout=30), worker.log()
    assert wait_until(lambda: "%2B1••••••••09" in web.log(), timeout=10), web.log()
    worker_log, web_log = worker.log(), web.log()
    # The lines are there, masked: the test would pass on silence otherwise.
    assert re.search(r"/v2/PhoneNumbers/(\+|%2B)1••••••••01", worker_log)  # twilio, INFO
    assert "Traceback" in worker_log and "['+1••••••••02']" in worker_log
    assert "(•••) •••-••03" in worker_log
    assert "/contacts/?q=(•••)%20•••-••06" in web_log  # gunicorn's access log
    assert "/contacts/?q=%28•••%29+•••-••07" in web_log
    numbers = [f"617555010{n}" for n in range(10)]
    assert whole_numbers_in(worker_log, numbers) == [], worker_log
    assert whole_numbers_in(web_log, numbers) == [], web_log
    assert e164_in(worker_log + web_log) == []


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_logging_after_a_simulated_callback(private_redis, processes, tmp_path):
    env = stack_env(
        private_redis,
        SMS_BACKEND="simulator",
        TWILIO_AUTH_TOKEN="logging-tests-auth-token",
        PUBLIC_BASE_URL="http://127.0.0.1:8000",
        SIMULATOR_CHAOS="0",
    )
    org = make_org()
    make_sender(org, phone_number="+14155550100", throughput=10)
    contacts = [make_contact(org, f"+1212555010{n}") for n in range(3)]
    worker = processes(Worker(env, tmp_path / "worker.log"))

    # The simulator posts its "sent" and "delivered" callbacks through the webhook inside the
    # pool processes (three messages, six callbacks, spread over both of them).
    code = (
        "import json\n"
        "from contacts.models import Contact\n"
        "from conversations import sending\n"
        "ids = []\n"
        f"for contact in Contact.objects.filter(pk__in={[c.pk for c in contacts]}):\n"
        "    message = sending.message_create_outbound(\n"
        "        org=contact.organization, contact=contact, body='See you at 6pm')\n"
        "    ids.append(message.pk)\n"
        "print(json.dumps(ids))\n"
    )
    message_ids = manage(env, code=code)

    def all_delivered():
        statuses = Message.objects.filter(pk__in=message_ids).values_list("status", flat=True)
        return len(statuses) == 3 and set(statuses) == {Message.Status.DELIVERED}

    assert wait_until(all_delivered, timeout=40), worker.log()

    # Each pool process that took a callback used to fall silent for good: tasks it ran next
    # failed without a line in the log.
    task_ids = enqueue(
        env, [("conversations.tasks.send_message", [f"+1617555011{n}"]) for n in range(8)]
    )

    assert wait_until(lambda: finished(worker, task_ids), timeout=30), worker.log()
    log = worker.log()
    assert all(f"+1••••••••1{n}" in log for n in range(8)), log
    assert whole_numbers_in(log, [f"617555011{n}" for n in range(8)]) == [], log
    assert e164_in(log) == [], log
