"""Celery tasks of the messaging pipeline: thin wrappers around conversations.sending and
conversations.reconciliation."""

import functools
import io
import logging
from urllib.parse import urlencode, urlsplit

from celery import shared_task
from django.conf import settings
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import InterfaceError, OperationalError, close_old_connections
from django.db.models import Q
from django.utils import timezone
from twilio.request_validator import RequestValidator

from config.celery import BULK, INTERACTIVE, enqueue
from conversations import (
    broadcasts,
    bulksend,
    event_requests,
    events,
    history,
    reconciliation,
    sending,
)
from conversations.models import Broadcast, Message

log = logging.getLogger(__name__)

DATABASE_RETRY_S = 2.0  # after event processing stopped on a database error

MAX_SEND_RETRIES = sending.MAX_SEND_ATTEMPTS - 1
WAITING_GRACE_MINUTES = 10


backoff = sending.backoff


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_SEND_RETRIES)
def send_message(self, message_id):
    # acks_late is safe here: the claim makes a redelivered task do nothing twice.
    try:
        return sending.message_send(message_id)
    except sending.RetryLater as exc:
        if self.request.retries >= self.max_retries:
            sending.message_give_up(message_id, f"Gave up after retries: {exc}")
            return "gave up"
        raise self.retry(countdown=backoff(self.request.retries), exc=exc) from exc
    except (OperationalError, InterfaceError) as exc:
        # The database is down or restarting. The message is still waiting (claimed, if the
        # outage came later: the sweeper reconciles it); try again once it is back.
        log.warning("send of message %s waits for the database: %s", message_id, exc)
        raise self.retry(countdown=backoff(min(self.request.retries, 3)), exc=exc) from exc


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def send_messages(self, message_ids):
    """A chunk of released broadcast messages (conversations.bulksend)."""
    # acks_late is safe here too: a redelivered chunk claims nothing already claimed.
    try:
        return bulksend.messages_send(message_ids)
    except (OperationalError, InterfaceError) as exc:
        # Messages this run claimed and did not send are the sweeper's to reconcile; the
        # retry claims the ones still waiting.
        log.warning("a chunk of %d sends waits for the database: %s", len(message_ids), exc)
        raise self.retry(countdown=backoff(self.request.retries), exc=exc) from exc


@shared_task
def reconcile_unknown_send(message_id):
    return reconciliation.reconcile_unknown_send(message_id)


@shared_task
def process_events():
    """Apply stored callbacks and inbound messages (also the periodic sweeper).

    Events postponed by a transient failure are due later: a run that leaves some asks for
    another when the first of them is due, so they never wait for the sweeper alone.
    """
    event_requests.processing_started()
    try:
        applied = events.events_apply_pending(limit=5000)
        due_in = events.next_retry_in()
    except (events.DatabaseUnavailable, OperationalError, InterfaceError) as exc:
        # Nothing is lost (the events stay stored); another run soon, not only the sweeper's.
        log.warning("event processing stopped, again in %s s: %s", DATABASE_RETRY_S, exc)
        event_requests.request_event_processing(delay=DATABASE_RETRY_S)
        return 0
    if due_in is not None:
        event_requests.request_event_processing(
            delay=max(due_in, event_requests.PROCESS_DEBOUNCE_MS / 1000)
        )
    return applied


@shared_task
def sweep_messages():
    """Reclaim sends of dead workers; re-enqueue messages whose task was lost."""
    reclaimed = reconciliation.reclaim_stale_claims()
    cutoff = timezone.now() - timezone.timedelta(minutes=WAITING_GRACE_MINUTES)
    # Waiting since creation, or since a broadcast released it.
    waiting = (
        Message.objects.filter(dispatch=Message.Dispatch.WAITING, created_at__lt=cutoff)
        .filter(Q(status_changed_at__isnull=True) | Q(status_changed_at__lt=cutoff))
        .values_list("pk", "broadcast_id")[:1000]
    )
    for pk, broadcast_id in waiting:
        enqueue("conversations.tasks.send_message", pk, queue=BULK if broadcast_id else INTERACTIVE)
    return {"reclaimed": reclaimed}


@shared_task
def reconcile_stuck_messages():
    return reconciliation.reconcile_stuck()


@shared_task
def expire_overdue_messages():
    return reconciliation.expire_overdue()


# The simulator's callbacks ----------------------------------------------------------------------


@shared_task
def simulator_callback(callback_url, sid, to, from_, status, error_code):
    """Deliver one simulated status callback through the real webhook, signed (SPEC §6)."""
    params = {
        "AccountSid": settings.TWILIO_ACCOUNT_SID or "AC" + "0" * 32,
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "To": to,
        "From": from_,
        "ApiVersion": "2010-04-01",
    }
    if error_code:
        params["ErrorCode"] = str(error_code)
    if status in {"delivered", "undelivered"}:
        params["RawDlrDoneDate"] = timezone.now().strftime("%y%m%d%H%M")
    url = callback_url.split("#", 1)[0]
    token = settings.TWILIO_AUTH_TOKEN or settings.SIMULATOR_AUTH_TOKEN
    signature = RequestValidator(token).compute_signature(url, params)
    status_code = post_in_process(url, params, {"HTTP_X_TWILIO_SIGNATURE": signature})
    if status_code >= 300:
        log.warning("simulated callback for %s got %s", sid, status_code)
    return status_code


def post_in_process(url, params, headers):
    """POST a form to `url` through this process's own WSGI application.

    The whole stack runs (middleware, signature check, view), exactly as for Twilio's request,
    without needing the web server to be up or reachable from a worker.
    """
    parts = urlsplit(url)
    body = urlencode(params).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": parts.path,
        "QUERY_STRING": parts.query,
        "SERVER_NAME": parts.hostname or "127.0.0.1",
        "SERVER_PORT": str(parts.port or (443 if parts.scheme == "https" else 80)),
        "HTTP_HOST": parts.netloc,
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": parts.scheme or "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        **headers,
    }
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"] = int(status.split(" ", 1)[0])

    # Like Django's test client: the request signals must not close this task's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        chunks = _application()(environ, start_response)
        try:
            b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return answer["status"]


@functools.cache
def _application():
    # Django is set up already in a worker: get_wsgi_application() would run setup() again,
    # and with it the whole logging configuration, in the middle of a task.
    return WSGIHandler()


@shared_task
def dispatch_broadcast(broadcast_id):
    return broadcasts.broadcast_dispatch(broadcast_id)


@shared_task
def dispatch_broadcasts():
    """The periodic dispatcher: every sending or held broadcast gets its next messages."""
    active = Broadcast.objects.filter(
        state__in=[Broadcast.State.SENDING, Broadcast.State.HELD]
    ).values_list("pk", flat=True)
    return {pk: broadcasts.broadcast_dispatch(pk) for pk in active}


@shared_task(
    acks_late=True,  # idempotent: a message already applied is remembered and skipped
    autoretry_for=(OSError,),  # Twilio unreachable, a timeout: resumed where it stopped
    retry_backoff=30,
    retry_jitter=True,
    max_retries=6,
)
def import_twilio_history(import_id):
    """Read and apply an organization's Twilio message history (conversations.history)."""
    record = history.history_import_run(import_id)
    return None if record is None else record.report
