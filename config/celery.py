"""The Celery app.

With REDIS_URL set, tasks go through Redis to separate worker processes
(`celery -A config worker`, `celery -A config beat`). Without it, the product still runs
whole: tasks execute inside this process, on background threads so that a request never waits
on a send, and periodic tasks run from a small in-process scheduler (config.inprocess).
"""

import logging
import os

from celery import Celery, Task
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class ReachableTask(Task):
    """Runs in-process when there is no broker; goes through the broker otherwise."""

    def apply_async(self, args=None, kwargs=None, **options):
        from django.conf import settings

        if settings.REDIS_URL:
            return super().apply_async(args, kwargs, **options)
        from config import inprocess

        return inprocess.submit(self, args or (), kwargs or {}, countdown=_countdown(options))

    def retry(
        self,
        args=None,
        kwargs=None,
        exc=None,
        throw=True,
        eta=None,
        countdown=None,
        max_retries=None,
        **options,
    ):
        """In background threads (no broker), a retry waits its back-off like a worker's would;
        Celery's eager mode would run it again at once."""
        from django.conf import settings

        if settings.REDIS_URL or settings.TASKS_IN_PROCESS == "sync":
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        from celery.exceptions import MaxRetriesExceededError, Retry

        from config import inprocess

        retries = self.request.retries + 1
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and retries > limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(f"{self.name} gave up after {limit} retries")
        call_args = self.request.args if args is None else args
        call_kwargs = self.request.kwargs if kwargs is None else kwargs
        inprocess.submit(
            self, call_args or (), call_kwargs or {}, countdown=countdown or 0, retries=retries
        )
        raise Retry(exc=exc, when=countdown)


def _countdown(options):
    if options.get("countdown"):
        return float(options["countdown"])
    eta = options.get("eta")
    if eta is not None:
        from django.utils import timezone

        return max(0.0, (eta - timezone.now()).total_seconds())
    return 0.0


app = Celery("reachable", task_cls=ReachableTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _log_through_django(**kwargs):
    """Workers and beat log through settings.LOGGING, as the web processes do.

    Left alone, Celery replaces the root logger's handlers with its own (so phone numbers went
    unmasked) and redirects stdout and stderr into logging, where a later configuration of
    Django's writing to stderr loops back into itself and is dropped.
    """
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)


def enqueue_on_commit(task_name, *args, countdown=None, **kwargs):
    """Enqueue a task by name once the current transaction commits (after `countdown` seconds).

    By name, so that a rule module can ask for follow-up work (a line-type re-lookup after
    30006, say) without importing the tasks module that itself calls the rules.
    """
    from django.db import transaction

    transaction.on_commit(lambda: enqueue(task_name, *args, countdown=countdown, **kwargs))


def enqueue(task_name, *args, countdown=None, **kwargs):
    """Enqueue now (to run after `countdown` seconds); if the broker is unreachable, log it and
    go on.

    Whatever was to be done is already stored (a waiting message, an unprocessed event), and
    the periodic sweepers pick it up once the broker is back: a request never fails, or hangs,
    because Redis is down.
    """
    from django.conf import settings
    from kombu.exceptions import OperationalError

    task = app.tasks[task_name]
    if not settings.REDIS_URL:
        # No broker to be down; a task's own errors show.
        return task.apply_async(args, kwargs, countdown=countdown)
    try:
        return task.apply_async(args, kwargs, countdown=countdown)
    except (OperationalError, ConnectionError, OSError) as exc:
        logging.getLogger(__name__).warning("could not enqueue %s: %s", task_name, exc)
        return None
