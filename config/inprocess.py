"""Tasks without a broker: background threads in this process.

Used when REDIS_URL is unset (the demo, a laptop). TASKS_IN_PROCESS="sync" runs each task at
once in the caller instead, which the test suite uses so that behaviour is deterministic.
Periodic tasks of CELERY_BEAT_SCHEDULE run from one scheduler thread started by `start_beat()`.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from celery.schedules import schedule as celery_schedule
from django.conf import settings
from django.db import close_old_connections, connections

log = logging.getLogger(__name__)

_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="task")
_beat_started = threading.Event()


class InProcessResult:
    """What apply_async returns in-process: enough for callers that only want an id."""

    def __init__(self, task_id=None):
        self.id = task_id


def _run(task, args, kwargs, retries=0):
    close_old_connections()
    try:
        task.apply(args=args, kwargs=kwargs, throw=False, retries=retries)
    except Exception:  # A task that raises must not kill the thread pool.
        log.exception("in-process task %s failed", task.name)
    finally:
        connections.close_all()


def submit(task, args, kwargs, countdown=0.0, retries=0):
    if settings.TASKS_IN_PROCESS == "sync":
        task.apply(args=args, kwargs=kwargs, throw=True, retries=retries)
        return InProcessResult()
    if countdown and countdown > 0:
        timer = threading.Timer(
            countdown, _executor.submit, args=(_run, task, args, kwargs, retries)
        )
        timer.daemon = True
        timer.start()
    else:
        _executor.submit(_run, task, args, kwargs, retries)
    return InProcessResult()


def start_beat(app, tick=1.0):
    """Run the beat schedule in a daemon thread (once per process)."""
    if _beat_started.is_set():
        return
    _beat_started.set()

    def loop():
        from django.utils import timezone

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
                    app.tasks[task_name].delay()
            time.sleep(tick)

    threading.Thread(target=loop, name="beat", daemon=True).start()
    log.info("in-process beat started with %d periodic tasks", len(app.conf.beat_schedule))
