"""Asking for event processing: at most once per debounce window, and never waiting on a dead
Redis more than once per pause."""

import types

import pytest
import redis

from conversations import event_requests
from conversations.event_requests import (
    PROCESS_DEBOUNCE_MS,
    PROCESS_EVENTS,
    REDIS_PAUSE_S,
    EventProcessingRequests,
)

URL = "redis://127.0.0.1:1/0"


class FakeRedis:
    """Answers SET NX as Redis would, or fails as a stopped Redis does."""

    def __init__(self):
        self.down = False
        self.calls = 0
        self.held = set()

    def set(self, key, value, nx=False, px=None):
        self.calls += 1
        if self.down:
            raise redis.TimeoutError("Timeout reading from socket")
        if nx and key in self.held:
            return False
        self.held.add(key)
        return True


@pytest.fixture
def world(settings, monkeypatch):
    settings.REDIS_URL = URL
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(event_requests, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    enqueued = []
    monkeypatch.setattr(
        event_requests, "enqueue", lambda name, **options: enqueued.append((name, options))
    )
    requests = EventProcessingRequests()
    fake = requests._clients[URL] = FakeRedis()
    return types.SimpleNamespace(clock=clock, enqueued=enqueued, requests=requests, redis=fake)


def test_a_process_asks_once_per_debounce_window(world):
    world.requests.request()
    world.clock.now += PROCESS_DEBOUNCE_MS / 1000 / 2
    world.requests.request()

    assert world.redis.calls == 1
    assert world.enqueued == [(PROCESS_EVENTS, {"countdown": PROCESS_DEBOUNCE_MS / 1000})]


def test_when_another_process_has_asked_nothing_more_is_enqueued(world):
    world.redis.held.add(event_requests.REQUESTED_KEY)

    world.requests.request()

    assert world.redis.calls == 1
    assert world.enqueued == []


def test_a_redis_that_does_not_answer_is_asked_once_per_pause(world, caplog):
    world.redis.down = True

    world.requests.request()
    for _ in range(5):  # webhooks keep coming, each after the debounce window
        world.clock.now += PROCESS_DEBOUNCE_MS / 1000 * 2
        world.requests.request()
        world.requests.request(delay=30)

    assert world.redis.calls == 1
    assert world.enqueued == []
    assert "could not request event processing" in caplog.text

    world.redis.down = False
    world.clock.now += REDIS_PAUSE_S
    world.requests.request()

    assert world.redis.calls == 2
    assert [name for name, _ in world.enqueued] == [PROCESS_EVENTS]
