"""Tasks without a broker: background threads in this process.

Used when REDIS_URL is unset (the demo, a laptop). TASKS_IN_PROCESS="sync" runs each task at
once in the caller instead, which the test suite uses so that behaviour is deterministic.
Tasks wait on the queue they were sent to (config.celery.QUEUES) and a small priority scheduler
runs them: an interactive send or an event never waits behind bulk sends or lookups.
Periodic tasks of CELERY_BEAT_SCHEDULE run from one scheduler thread started by `start_beat()`.
"""

import heapq
import itertools
import logging
import threading
import time

from celery.schedules import schedule as celery_schedule
from django.conf import settings
from django.db import close_old_connections, connections

log = logging.getLogger(__name__)

# The queues in the order a free thread serves them, and how many threads each may hold at
# once. Bulk work, lookups and maintenance (an import, the dispatcher) together hold at most 5
# of the 7 threads: an interactive send or an event always finds a thread, and takes it before
# anything queued.
PRIORITY = ("interactive", "events", "maintenance", "bulk", "lookups")
LIMITS = {"interactive": 7, "events": 7, "maintenance": 2, "bulk": 2, "lookups": 1}
THREADS = 7

_beat_started = threading.Event()
_local = threading.local()


class InProcessResult:
    """What apply_async returns in-process: enough for callers that only want an id."""

    def __init__(self, task_id=None):
        self.id = task_id


class Scheduler:
    """A small priority scheduler: one FIFO per queue, served by a few threads in PRIORITY
    order, each queue held to its limit of threads."""

    def __init__(self, threads=THREADS, priority=PRIORITY, limits=LIMITS):
        self.threads, self.priority, self.limits = threads, priority, limits
        self._waiting = {queue: [] for queue in priority}
        self._running = dict.fromkeys(priority, 0)
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._started = False

    def submit(self, queue, job):
        """Run `job` (a callable) on `queue`'s turn."""
        queue = queue if queue in self._waiting else "maintenance"
        with self._cond:
            heapq.heappush(self._waiting[queue], (next(self._order), job))
            if not self._started:
                self._started = True
                for n in range(self.threads):
                    threading.Thread(target=self._serve, name=f"task-{n}", daemon=True).start()
            self._cond.notify_all()

    def _next(self):
        for queue in self.priority:
            if self._waiting[queue] and self._running[queue] < self.limits.get(queue, 1):
                return queue, heapq.heappop(self._waiting[queue])[1]
        return None, None

    def _serve(self):
        while True:
            with self._cond:
                queue, job = self._next()
                while job is None:
                    self._cond.wait()
                    queue, job = self._next()
                self._running[queue] += 1
            try:
                job(queue)
            except Exception:  # A job that raises must not kill its thread.
                log.exception("in-process job on %s failed", queue)
            finally:
                with self._cond:
                    self._running[queue] -= 1
                    self._cond.notify_all()

    def discard_waiting(self):
        with self._cond:
            for waiting in self._waiting.values():
                waiting.clear()


_scheduler = Scheduler()
_timers = set()  # tasks waiting out their countdown
_timers_lock = threading.Lock()


def discard_pending():
    """Forget the tasks not yet started: those waiting out a countdown and those queued. A test
    ends with it, so that a retry one test scheduled never runs during another (or while the
    test database is dropped)."""
    with _timers_lock:
        timers = list(_timers)
        _timers.clear()
    for timer in timers:
        timer.cancel()
    _scheduler.discard_waiting()


def current_queue():
    """The queue of the task this thread runs, if any."""
    return getattr(_local, "queue", None)


def _run(task, args, kwargs, retries, queue):
    _local.queue = queue
    close_old_connections()
    try:
        task.apply(args=args, kwargs=kwargs, throw=False, retries=retries)
    except Exception:  # A task that raises must not kill the thread.
        log.exception("in-process task %s failed", task.name)
    finally:
        _local.queue = None
        connections.close_all()


def submit(task, args, kwargs, countdown=0.0, retries=0, queue="maintenance"):
    if settings.TASKS_IN_PROCESS == "sync":
        task.apply(args=args, kwargs=kwargs, throw=True, retries=retries)
        return InProcessResult()

    def job(queue):
        _run(task, args, kwargs, retries, queue)

    if countdown and countdown > 0:

        def due():
            with _timers_lock:
                _timers.discard(timer)
            _scheduler.submit(queue, job)

        timer = threading.Timer(countdown, due)
        timer.daemon = True
        with _timers_lock:
            _timers.add(timer)
        timer.start()
    else:
        _scheduler.submit(queue, job)
    return InProcessResult()


def start_beat(app, tick=1.0):
    """Run the beat schedule in a daemon thread (once per process)."""
    if _beat_started.is_set():
        return
    _beat_started.set()

    def loop():
        from django.utils import timezone

        from config.celery import enqueue

        started = timezone.now()
        entries = []
        for entry in app.conf.beat_schedule.values():
            sched = entry["schedule"]
            if not hasattr(sched, "is_due"):
                sched = celery_schedule(sched)
            entries.append([entry["task"], sched, started])
        while True:
            for item in entries:
                task_name, sched, last_run = item
                due, _next = sched.is_due(last_run)
                if due:
                    item[2] = timezone.now()
                    enqueue(task_name)
            time.sleep(tick)

    threading.Thread(target=loop, name="beat", daemon=True).start()
    log.info("in-process beat started with %d periodic tasks", len(app.conf.beat_schedule))
