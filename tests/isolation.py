"""What every test runs with, and rows that the tests of one module share."""

import contextlib

import pytest
from django.db import transaction
from django.test import override_settings

# Without a broker, tasks run in the caller during tests: deterministic and sequential.
TEST_SETTINGS = {
    "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],  # fast
    "TASKS_IN_PROCESS": "sync",
    "SMS_BACKEND": "locmem",
    "REDIS_URL": "",
    "LOOKUP_RATE": 10_000,  # pacing has its own tests
    "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
}


def reset_in_process_state():
    """Forget what an earlier test left in this process: pacing, the cache, the sent texts,
    the in-process tasks not yet started."""
    from django.core.cache import cache

    from config import inprocess, pacing
    from conversations.backends import get_backend

    inprocess.discard_pending()

    pacing._local_next.clear()
    pacing._local_calls.clear()
    cache.clear()
    get_backend("locmem").reset()


@contextlib.contextmanager
def rows_for_the_module(django_db_blocker):
    """Rows that a module's tests share, made once in a transaction rolled back after the
    module's last test (call it in a module-scoped fixture and yield inside the block). Each test
    runs in a savepoint within it, as with TestCase.setUpTestData, so what a test changes is
    undone before the next one. Not for modules with transactional tests."""
    with django_db_blocker.unblock(), override_settings(**TEST_SETTINGS), transaction.atomic():
        reset_in_process_state()
        yield
        transaction.set_rollback(True)


def fresh(instance):
    """`instance` read again: what an earlier test did to the module's objects in memory does
    not carry over."""
    return type(instance).objects.get(pk=instance.pk)


def from_the_world(request, name, make):
    """For a test that uses its module's `world` fixture, a fresh copy of the world's `name`;
    for the others, a new one from `make()`. The world stays in the database for the whole
    module, so what `make` creates must not collide with it (another slug, another username)."""
    if "world" in request.fixturenames:
        return fresh(getattr(request.getfixturevalue("world"), name))
    return make()


# A module whose shared rows (its `world` fixture) fill the organization imports these two in
# place of conftest's, so that its other tests still get an empty organization of their own.


@pytest.fixture
def org(request, db):
    """The world's organization for a test that uses the module's world; a new, empty one for
    the others."""
    from tests.factories import make_org

    return from_the_world(request, "org", lambda: make_org("Riverside", slug="riverside-new"))


@pytest.fixture
def owner(request, org):
    """The manager of `org`."""
    from contacts.models import Membership
    from tests.factories import make_member

    return from_the_world(
        request, "owner", lambda: make_member(org, Membership.Role.MANAGER, username="manager")
    )
