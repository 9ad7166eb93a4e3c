"""Asking for event processing without a broker round-trip per webhook.

Every stored webhook wants its event applied soon, but one processing task applies everything
stored by the time it runs: a process asks at most once per PROCESS_DEBOUNCE_MS, and with Redis
so do all processes together (SET NX PX). A Redis that does not answer is left alone for
REDIS_PAUSE_S: while it is down, one webhook per process and pause waits its short timeout,
the others none (the sweeper processes what they stored). The state is held by the
conversations app, one object per process, and kept per Redis URL (a client made for one Redis
is never used for another).
"""

import logging
import threading
import time

from django.apps import apps
from django.conf import settings

from config.celery import enqueue

log = logging.getLogger(__name__)

PROCESS_DEBOUNCE_MS = 200
REDIS_PAUSE_S = 2.0
PROCESS_EVENTS = "conversations.tasks.process_events"
REQUESTED_KEY = "reachable:events:requested"
FOLLOW_UP_KEY = "reachable:events:follow-up"


def request_event_processing(delay=None):
    """Have stored events processed soon: at most one processing task per 200 ms.

    `delay`: seconds from now (a follow-up for postponed events). Never raises: if Redis is
    down, the events stay stored and the periodic sweeper runs them.
    """
    apps.get_app_config("conversations").event_requests.request(delay)


def processing_started():
    """A processing run has begun: without Redis, the next stored event asks for another."""
    apps.get_app_config("conversations").event_requests.started()


class EventProcessingRequests:
    """One process's requests for event processing."""

    def __init__(self):
        self._lock = threading.Lock()
        self._in_process_pending = threading.Event()  # without Redis: a run is already asked for
        self._clients = {}  # Redis URL -> client
        self._last_request = {}  # Redis URL -> time.monotonic() of this process's last ask
        self._paused_until = {}  # Redis URL -> time.monotonic() before which it is not asked

    def request(self, delay=None):
        if delay is not None:
            self._follow_up(min(delay, 600.0))
            return
        url = settings.REDIS_URL
        if not url:
            if settings.TASKS_IN_PROCESS == "sync":
                enqueue(PROCESS_EVENTS)
            elif not self._in_process_pending.is_set():
                self._in_process_pending.set()
                enqueue(PROCESS_EVENTS, countdown=PROCESS_DEBOUNCE_MS / 1000)
            return
        # Within the debounce window this process has already asked: the task it asked for
        # runs after the window and processes every event stored by then (the sweeper catches
        # the rest).
        now = time.monotonic()
        with self._lock:
            if now - self._last_request.get(url, float("-inf")) < PROCESS_DEBOUNCE_MS / 1000:
                return
            self._last_request[url] = now
        if self._paused(url):
            return
        try:
            if self._redis(url).set(REQUESTED_KEY, 1, nx=True, px=PROCESS_DEBOUNCE_MS):
                enqueue(PROCESS_EVENTS, countdown=PROCESS_DEBOUNCE_MS / 1000)
        except Exception as exc:  # Redis down: the sweeper will process what is stored.
            self._pause(url)
            log.warning("could not request event processing: %s", exc)

    def started(self):
        self._in_process_pending.clear()

    def _follow_up(self, delay):
        """One processing run `delay` seconds from now for postponed events, however many runs
        ask for it meanwhile."""
        url = settings.REDIS_URL
        if not url:
            if settings.TASKS_IN_PROCESS != "sync":  # in tests, retries are run by the test
                enqueue(PROCESS_EVENTS, countdown=delay)
            return
        if self._paused(url):
            return
        try:
            if self._redis(url).set(FOLLOW_UP_KEY, 1, nx=True, px=int(delay * 1000) + 1):
                enqueue(PROCESS_EVENTS, countdown=delay)
        except Exception as exc:  # Redis down: the sweeper will process what is stored.
            self._pause(url)
            log.warning("could not ask for a later event processing run: %s", exc)

    def _paused(self, url):
        with self._lock:
            return time.monotonic() < self._paused_until.get(url, float("-inf"))

    def _pause(self, url):
        with self._lock:
            self._paused_until[url] = time.monotonic() + REDIS_PAUSE_S

    def _redis(self, url):
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                # One try: a webhook waits at most one short timeout on a Redis that does not
                # answer (redis-py would otherwise retry three times with back-off).
                client = self._clients[url] = redis.Redis.from_url(
                    url,
                    socket_timeout=0.5,
                    socket_connect_timeout=0.5,
                    retry=Retry(NoBackoff(), 0),
                )
            return client
