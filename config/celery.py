"""The Celery app, and the one way work is handed to it: `enqueue` / `enqueue_on_commit`.

With REDIS_URL set, tasks go through Redis to separate worker processes
(`celery -A config worker -Q <queues>`, `celery -A config beat`). Without it, the product still
runs whole: tasks execute inside this process, on background threads so that a request never
waits on a send, and periodic tasks run from a small in-process scheduler (config.inprocess).

Work runs on queues by urgency (SPEC §5), in both modes:

- `interactive`: a staff one-to-one send, a Sample Text, an automatic reply (HELP, the opt-out
  confirmation), and the reconciliation of such a send;
- `events`: applying stored webhooks (status callbacks, inbound messages);
- `bulk`: broadcast sends;
- `lookups`: line-type lookups, batched and rate-limited;
- `maintenance`: periodic sweeps, the broadcast dispatcher, contact imports, the Twilio
  history import.

A task has a home queue (TASK_QUEUES); a send goes to `bulk` or `interactive` by what it is,
which its caller knows (`queue=`). A retry stays on the queue it came from.
"""

import logging
import os

from celery import Celery, Task
from celery.signals import setup_logging
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


INTERACTIVE, EVENTS, BULK, LOOKUPS, MAINTENANCE = QUEUES = (
    "interactive",
    "events",
    "bulk",
    "lookups",
    "maintenance",
)

# Each task's home queue. A send's queue is chosen by its caller (see message_queue).
TASK_QUEUES = {
    "conversations.tasks.send_message": INTERACTIVE,
    "conversations.tasks.reconcile_unknown_send": INTERACTIVE,
    "conversations.tasks.process_events": EVENTS,
    "conversations.tasks.simulator_callback": EVENTS,
    "conversations.tasks.dispatch_broadcast": MAINTENANCE,
    "conversations.tasks.dispatch_broadcasts": MAINTENANCE,
    "conversations.tasks.sweep_messages": MAINTENANCE,
    "conversations.tasks.reconcile_stuck_messages": MAINTENANCE,
    "conversations.tasks.expire_overdue_messages": MAINTENANCE,
    "contacts.tasks.import_contacts": MAINTENANCE,
    "conversations.tasks.import_twilio_history": MAINTENANCE,
    "deliverability.tasks.lookup_number": LOOKUPS,
    "deliverability.tasks.lookup_numbers": LOOKUPS,
    "deliverability.tasks.refresh_stale_lookups": MAINTENANCE,
    "deliverability.tasks.end_expired_pauses": MAINTENANCE,
    "deliverability.tasks.apply_review_deadlines": MAINTENANCE,
    "deliverability.tasks.import_deactivations_for": MAINTENANCE,
    "deliverability.tasks.import_deactivations_daily": MAINTENANCE,
}


def queue_of(task_name):
    return TASK_QUEUES.get(task_name, MAINTENANCE)


class ReachableTask(Task):
    """Runs in-process when there is no broker; goes through the broker otherwise."""

    def apply_async(self, args=None, kwargs=None, **options):
        from django.conf import settings

        options["queue"] = options.get("queue") or queue_of(self.name)
        if settings.REDIS_URL:
            return super().apply_async(args, kwargs, **options)
        from config import inprocess

        return inprocess.submit(
            self,
            args or (),
            kwargs or {},
            countdown=_countdown(options),
            queue=options["queue"],
        )

    def current_queue(self):
        """The queue this run came from (a retry goes back to it)."""
        from config import inprocess

        delivery = getattr(self.request, "delivery_info", None) or {}
        return delivery.get("routing_key") or inprocess.current_queue() or queue_of(self.name)

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

        options.setdefault("queue", self.current_queue())
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
            self,
            call_args or (),
            call_kwargs or {},
            countdown=countdown or 0,
            retries=retries,
            queue=options["queue"],
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
# Celery beat and any direct apply_async reach the same queues as `enqueue`.
app.conf.task_routes = {name: {"queue": queue} for name, queue in TASK_QUEUES.items()}
app.conf.task_default_queue = MAINTENANCE
# A worker started without -Q serves every queue (a small install: one worker does it all).
app.conf.task_queues = [Queue(name, Exchange(name), routing_key=name) for name in QUEUES]
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


def enqueue_on_commit(task_name, *args, countdown=None, queue=None, **kwargs):
    """Enqueue a task by name once the current transaction commits (after `countdown` seconds).

    By name, so that a rule module can ask for follow-up work (a line-type re-lookup after
    30006, say) without importing the tasks module that itself calls the rules.
    """
    from django.db import transaction

    transaction.on_commit(
        lambda: enqueue(task_name, *args, countdown=countdown, queue=queue, **kwargs)
    )


def enqueue(task_name, *args, countdown=None, queue=None, **kwargs):
    """Enqueue now on `queue` (default: the task's home queue), to run after `countdown`
    seconds; if the broker is unreachable, log it and go on.

    Whatever was to be done is already stored (a waiting message, an unprocessed event), and
    the periodic sweepers pick it up once the broker is back: a request never fails, or hangs,
    because Redis is down.
    """
    from django.conf import settings
    from kombu.exceptions import OperationalError

    task = app.tasks[task_name]
    queue = queue or queue_of(task_name)
    if not settings.REDIS_URL:
        # No broker to be down; a task's own errors show.
        return task.apply_async(args, kwargs, countdown=countdown, queue=queue)
    try:
        return task.apply_async(args, kwargs, countdown=countdown, queue=queue)
    except (OperationalError, ConnectionError, OSError) as exc:
        logging.getLogger(__name__).warning("could not enqueue %s: %s", task_name, exc)
        return None


def message_queue(message):
    """Where a send goes: a broadcast's to `bulk`, everything else (a staff one-to-one send, a
    Sample Text, an automatic reply) to `interactive`."""
    return BULK if message.broadcast_id else INTERACTIVE
