"""Shared fixtures: an organization with a manager (owner) and a staff member (teammate), and
an outsider who manages another organization.

Tests that need a service carry a marker (postgres, redis, browser, twilio_mock). They run only
when TEST_SERVICES names their service (or is "all"); then a missing service is a failure.
Otherwise they are skipped with a message saying what is missing.
"""

import gc
import os
import shutil
import socket
import sys
from urllib.parse import urlparse

import pytest
from django.conf import settings as django_settings
from hypothesis import settings as hypothesis_settings

from config import inprocess
from contacts.models import Membership
from tests import factories, testdb
from tests.isolation import TEST_SETTINGS, reset_in_process_state

# The test modules' rewritten asserts are kept in __pycache__ (git-ignored) even where
# PYTHONDONTWRITEBYTECODE is set: rewriting every module again costs each worker seconds a run.
sys.dont_write_bytecode = False

SERVICE_MARKERS = ("postgres", "redis", "browser", "twilio_mock")

pytest_plugins = ["tests.browser"]

testdb.install()

# Property tests that go through the database and the pages take the number of examples from
# the profile: "quick" (the default, for `uv run pytest`) or "thorough" (HYPOTHESIS_PROFILE=
# thorough, CI's services pass). Pure functions that are cheap to call set their own, larger count.
hypothesis_settings.register_profile("quick", max_examples=15)
hypothesis_settings.register_profile("thorough", max_examples=100)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


# The ORM makes many short-lived objects: with the default thresholds (a collection every 700
# allocations) the collector took about a tenth of the run. The collected tests and imported
# modules live for the whole run, so they are frozen out of every later collection. On SQLite
# only, the pass with a time target: on PostgreSQL a connection that a finished thread left
# open is closed only when the collector reaches it, so that pass keeps the defaults.
_FEWER_COLLECTIONS = django_settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
if _FEWER_COLLECTIONS:
    gc.set_threshold(50_000, 50, 100)


def pytest_collection_finish(session):
    if _FEWER_COLLECTIONS:
        gc.collect()
        gc.freeze()


def _requested_services():
    value = os.environ.get("TEST_SERVICES", "").strip().lower()
    if value in ("all", "1", "true", "yes"):
        return set(SERVICE_MARKERS)
    return {item.strip() for item in value.split(",") if item.strip()}


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def service_problem(name):
    """Why the service `name` cannot be used here, or None when it can."""
    if name == "postgres":
        if django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
            return "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
        return None
    if name == "redis":
        url = os.environ.get("REDIS_URL")
        if not url:
            return "needs Redis: set REDIS_URL=redis://127.0.0.1:6379/0"
        parsed = urlparse(url)
        if not _port_open(parsed.hostname or "127.0.0.1", parsed.port or 6379):
            return f"needs Redis: nothing answers at {url}"
        return None
    if name == "browser":
        if not shutil.which("chromium") and not os.path.exists("/usr/bin/chromium"):
            return "needs Chromium: apt-get install chromium"
        return None
    if name == "twilio_mock":
        if not shutil.which("node") or not shutil.which("npm"):
            return "needs the Twilio contract mock: node and npm to run ../shared/tools/twilio-mock"
        return None
    return None


def pytest_collection_modifyitems(config, items):
    requested = _requested_services()
    for item in items:
        for name in SERVICE_MARKERS:
            if item.get_closest_marker(name) is None:
                continue
            if name not in requested:
                problem = service_problem(name) or f"needs {name}"
                item.add_marker(
                    pytest.mark.skip(reason=f"{problem} and TEST_SERVICES={name} (or all)")
                )
                continue
            problem = service_problem(name)
            if problem:
                # Asked for and missing: a failure, never a skip.
                item.add_marker(pytest.mark.usefixtures("_missing_service"))
                item.user_properties.append(("missing_service", problem))


@pytest.fixture
def _missing_service(request):
    problems = [value for key, value in request.node.user_properties if key == "missing_service"]
    pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _tasks_run_at_once(settings):
    """Without a broker, tasks run in the caller during tests: deterministic and sequential."""
    for name, value in TEST_SETTINGS.items():
        setattr(settings, name, value)
    reset_in_process_state()
    yield
    inprocess.discard_pending()  # the last test's too, before the test database is dropped


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own on a loopback port (tests.stack), stopped after it."""
    from tests.stack import PrivateRedis

    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sender(org):
    """The org's long code, fast enough that pacing never makes a test wait (pacing has its
    own tests). Modules that need another sender define their own."""
    return factories.make_sender(org, phone_number="+14155550100", throughput=100)


@pytest.fixture
def contact(org, sender):
    """A member on +12125550123, the number the send-path tests text."""
    return factories.make_contact(org, "+12125550123")


@pytest.fixture
def org(db):
    return factories.make_org("Riverside Test Club", slug="riverside-test")


@pytest.fixture
def other_org(db):
    return factories.make_org("Harbor Test Clinic", slug="harbor-test")


@pytest.fixture
def owner(org):
    """A manager of `org`."""
    return factories.make_member(org, Membership.Role.MANAGER, username="owner")


@pytest.fixture
def teammate(org):
    """A staff member of `org`."""
    return factories.make_member(org, Membership.Role.STAFF, username="teammate")


@pytest.fixture
def outsider(other_org):
    """A manager of another organization."""
    return factories.make_member(other_org, Membership.Role.MANAGER, username="outsider")


def _client_for(client_class, user):
    return factories.sign_in(client_class(), user)


@pytest.fixture
def owner_client(owner):
    from django.test import Client

    return _client_for(Client, owner)


@pytest.fixture
def teammate_client(teammate):
    from django.test import Client

    return _client_for(Client, teammate)


@pytest.fixture
def outsider_client(outsider):
    from django.test import Client

    return _client_for(Client, outsider)
