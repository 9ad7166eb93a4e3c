"""SMS backends, chosen by SMS_BACKEND (SPEC §9): twilio, simulator, locmem.

Each backend sends one message and can fetch a message's status by SID or find messages by
recipient and time (for reconciliation of sends whose outcome is unknown). Errors come back as
SendError, which says whether the send may be retried and whether its outcome is unknown.
"""

import hashlib
import logging
import os
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

import requests
from django.conf import settings
from django.core.cache import cache
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from config import pacing
from contacts.phones import mask
from deliverability import catalogue
from deliverability.number_plan import HISTORY_DAYS_AGO, history_for, plan_for
from deliverability.twilio_client import twilio_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    sid: str
    status: str  # queued, accepted, sending, sent...


@dataclass(frozen=True)
class RemoteMessage:
    """What the provider knows of a message (a fetch or a list by recipient)."""

    sid: str
    status: str
    error_code: int | None = None
    to: str = ""
    body: str = ""
    date_created: object = None
    price: Decimal | None = None  # what Twilio charged, positive; None until it is known
    price_unit: str = ""


@dataclass(frozen=True)
class HistoryMessage:
    """A message of the account's history as Twilio's Messages list shows it."""

    sid: str
    direction: str  # "inbound", or "outbound" (outbound-api, outbound-reply, outbound-call)
    from_: str
    to: str
    body: str
    status: str
    error_code: int | None
    sent_at: datetime
    messaging_service_sid: str = ""

    @property
    def is_inbound(self):
        return self.direction == "inbound"


HISTORY_PAGE_SIZE = 1000  # Twilio's largest page of the Messages list


class SendError(Exception):
    """A send that did not go through.

    transient: may be retried later (5xx, 429, throughput codes, a connection refused).
    outcome_unknown: the request may have reached the provider (a read timeout, a dropped
    connection); it must be reconciled before any retry, never blindly re-sent.
    """

    def __init__(self, message, *, code=None, http_status=None, transient=False, unknown=False):
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.transient = transient
        self.outcome_unknown = unknown


def _is_transient(code, http_status):
    if http_status is not None and (http_status >= 500 or http_status == 429):
        return True
    return code is not None and catalogue.describe(code).category == catalogue.Category.THROUGHPUT


_clients = threading.local()
_paces = threading.local()


class _Written:
    """A connection that tells pacing when a request has been written (`pacing.call_went`)."""

    def request(self, *args, **kwargs):
        super().request(*args, **kwargs)
        pacing.call_went()


class _WrittenHTTPConnection(_Written, HTTPConnection):
    pass


class _WrittenHTTPSConnection(_Written, HTTPSConnection):
    pass


class _WrittenHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WrittenHTTPConnection


class _WrittenHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WrittenHTTPSConnection


class _PacedAdapter(HTTPAdapter):
    """requests' adapter that first lets its thread's pending pace (`send_paced`) run: the wait
    for the sender's pace ends just before the request is written, once it is built; and
    pacing hears when it was written."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WrittenHTTPPool,
            "https": _WrittenHTTPSPool,
        }

    def send(self, request, *args, **kwargs):
        pace = getattr(_paces, "pending", None)
        if pace is not None:
            _paces.pending = None
            pace()
        return super().send(request, *args, **kwargs)


def _thread_client():
    """This thread's twilio-python Client, made once per configuration and kept.

    A send reuses its thread's HTTP session and kept-alive connection instead of building a
    client (and opening a connection) per message. One per thread, not one per process: the
    client and its session keep per-request state that threads must not share.
    """
    key = (
        settings.TWILIO_BASE_URL,
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        settings.TWILIO_TIMEOUT,
    )
    if getattr(_clients, "key", None) != key:
        client = twilio_client()
        session = getattr(client.http_client, "session", None)
        if session is not None:
            # The environment's proxy and CA settings, read once: left to trust the
            # environment, requests scans every variable of it again on each call.
            host = settings.TWILIO_BASE_URL or "https://api.twilio.com"
            client.http_client.proxy = client.http_client.proxy or get_environ_proxies(host)
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                session.verify = bundle
            session.trust_env = False
            for prefix in ("https://", "http://"):
                session.mount(prefix, _PacedAdapter())
        client.messages  # noqa: B018 - the Messages API's modules load now, not at a first send
        _clients.client, _clients.key = client, key
    return _clients.client


def send_paced(backend, pace, **message):
    """`backend.send(**message)` once `pace()` has returned (the wait for the sender's pace).

    With Twilio the pace runs in the HTTP layer, after the request is built and right before
    it is written on the thread's connection: a send the pace lets go reaches Twilio when the
    pace said, not after the client's own work (or a moment the thread is held up in it).
    """
    if not isinstance(backend, TwilioBackend):
        pace()
        return backend.send(**message)
    _paces.pending = pace
    try:
        return backend.send(**message)
    finally:
        _paces.pending = None


class TwilioBackend:
    """twilio-python's Client from the one client factory (honours TWILIO_BASE_URL), one per
    thread and configuration."""

    def __init__(self):
        self.client = _thread_client()

    def send(self, *, to, from_, body, status_callback):
        params = {
            "to": to,
            "body": body,
            "status_callback": status_callback,
            "validity_period": settings.MESSAGE_VALIDITY_SECONDS,
        }
        if from_.startswith("MG"):
            params["messaging_service_sid"] = from_
        else:
            params["from_"] = from_
        try:
            created = self.client.messages.create(**params)
        except (TwilioRestException, TwilioServiceException) as exc:
            # Without a Twilio code in the answer, twilio-python puts the HTTP status there.
            code = exc.code if exc.code and exc.code != exc.status else None
            if exc.status == 429 and code is None:
                code = catalogue.HTTP_TOO_MANY_REQUESTS
            # The newer RFC 9457 errors carry a title and detail instead of a message.
            text = (
                getattr(exc, "msg", None)
                or getattr(exc, "detail", None)
                or getattr(exc, "title", "")
            )
            raise SendError(
                text or f"HTTP {exc.status}",
                code=code,
                http_status=exc.status,
                transient=_is_transient(code, exc.status),
                # A server error may come after the message was taken (a gateway timing out
                # in front of it): it is looked for before any retry. A 429 took nothing.
                unknown=exc.status is not None and exc.status >= 500,
            ) from exc
        except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
            # The connection never opened: nothing reached Twilio.
            raise SendError(str(exc), transient=True) from exc
        except requests.RequestException as exc:
            # The request may have left: a read timeout, a connection dropped mid-answer.
            raise SendError(str(exc), transient=True, unknown=True) from exc
        if not created.sid:
            raise SendError("Twilio answered without a message SID", unknown=True)
        return SendResult(sid=created.sid, status=created.status or "queued")

    def fetch(self, sid):
        found = self.client.messages(sid).fetch()
        return _remote(found)

    def history(self, *, after, before):
        """The account's messages sent in [after, before), newest first, page by page."""
        listed = self.client.messages.stream(
            date_sent_after=after, date_sent_before=before, page_size=HISTORY_PAGE_SIZE
        )
        for item in listed:
            message = _history(item)
            if message is None or message.sent_at >= before:
                continue
            if message.sent_at < after:
                # Twilio lists the newest first: the rest of the list is older still.
                return
            yield message

    def find(self, *, to, from_, after):
        # Not filtered by DateSent: it is a whole day, and a message still queued at Twilio
        # (the very one a lost answer leaves behind) has no date_sent yet.
        listed = self.client.messages.list(to=to, limit=50)
        return [
            _remote(item)
            for item in listed
            if _sent_by(item, from_) and (not item.date_created or item.date_created >= after)
        ]


def _sent_by(item, from_):
    """A message sent through a messaging service carries the pool number it went out from."""
    if not from_:
        return True
    if from_.startswith("MG"):
        return item.messaging_service_sid == from_
    return item.from_ == from_


def _remote(item):
    price = _price(getattr(item, "price", None))
    return RemoteMessage(
        sid=item.sid,
        status=item.status or "",
        error_code=int(item.error_code) if item.error_code else None,
        to=item.to or "",
        body=item.body or "",
        date_created=item.date_created,
        price=price,
        price_unit=(getattr(item, "price_unit", None) or "")[:3] if price is not None else "",
    )


def _price(value):
    """Twilio's price of a message ("-0.00830", a charge) as a positive Decimal, or None."""
    if value in (None, ""):
        return None
    try:
        amount = abs(Decimal(str(value)))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _history(item):
    """A Messages list item as a HistoryMessage; None when it has no time to place it by."""
    moment = item.date_sent or item.date_created
    if moment is None or not item.sid:
        return None
    direction = item.direction or ""
    return HistoryMessage(
        sid=item.sid,
        direction="inbound" if direction == "inbound" else "outbound",
        from_=item.from_ or "",
        to=item.to or "",
        body=item.body or "",
        status=item.status or "",
        error_code=int(item.error_code) if item.error_code else None,
        sent_at=moment,
        messaging_service_sid=item.messaging_service_sid or "",
    )


@dataclass
class LocmemBackend:
    """Records sends in memory, for tests. `fail_with` makes the next sends raise."""

    outbox: list = field(default_factory=list)
    fail_with: list = field(default_factory=list)
    remote: dict = field(default_factory=dict)

    def send(self, *, to, from_, body, status_callback):
        if self.fail_with:
            raise self.fail_with.pop(0)
        sid = "SM" + uuid.uuid4().hex
        self.outbox.append(
            {"sid": sid, "to": to, "from": from_, "body": body, "callback": status_callback}
        )
        self.remote[sid] = RemoteMessage(sid=sid, status="queued", to=to, body=body)
        return SendResult(sid=sid, status="queued")

    def fetch(self, sid):
        return self.remote.get(sid)

    history_messages: list = field(default_factory=list)

    def find(self, *, to, from_, after):
        return [m for m in self.remote.values() if m.to == to]

    def history(self, *, after, before):
        """`history_messages` in the window, newest first (as Twilio lists them)."""
        found = [m for m in self.history_messages if after <= m.sent_at < before]
        yield from sorted(found, key=lambda m: m.sent_at, reverse=True)

    def reset(self):
        self.outbox.clear()
        self.fail_with.clear()
        self.remote.clear()
        self.history_messages.clear()


class SimulatorBackend:
    """A local carrier following SPEC §9's number plan; it calls our status webhook, signed.

    Callbacks are scheduled as tasks with realistic delays and posted through the real webhook
    (signature check included). With SIMULATOR_CHAOS=1 they come out of order and twice.
    What it accepted is also kept in the cache (Redis, when there is one), so that a worker
    reconciling a send another worker made finds it, as it would at Twilio.
    """

    SENT_AFTER = 2.0
    FINAL_AFTER = 6.0
    KEEP = 3 * 24 * 3600  # seconds, as long as reconciliation looks back

    def __init__(self):
        self._lock = threading.Lock()
        self._attempts = {}
        self.remote = {}

    def _attempt_number(self, to):
        with self._lock:
            self._attempts[to] = self._attempts.get(to, 0) + 1
            return self._attempts[to]

    def send(self, *, to, from_, body, status_callback):
        entry = plan_for(to)
        if entry.create_error:
            code = entry.create_error
            reason = catalogue.describe(code).reason
            raise SendError(reason, code=code, http_status=400)
        sid = "SM" + uuid.uuid4().hex
        final, error = entry.final_status, entry.final_error
        if entry.flaky and self._attempt_number(to) % 2 == 0:
            final, error = "undelivered", 30003
        self._remember(RemoteMessage(sid=sid, status=final, error_code=error, to=to, body=body))
        steps = [("sent", None, self.SENT_AFTER), (final, error, self.FINAL_AFTER)]
        if settings.SIMULATOR_CHAOS:
            steps = [(status, code, random.uniform(0.2, 3.0)) for status, code, _ in steps]
            steps.append(random.choice(steps))
        from config.celery import enqueue  # By name: the tasks module imports this one.

        for status, code, delay in steps:
            enqueue(
                "conversations.tasks.simulator_callback",
                status_callback,
                sid,
                to,
                from_,
                status,
                code,
                countdown=delay,
            )
        log.info("simulator accepted a message to %s as %s", mask(to), sid)
        return SendResult(sid=sid, status="queued")

    def _remember(self, remote):
        self.remote[remote.sid] = remote
        try:
            sids = cache.get(f"simulator:to:{remote.to}") or []
            cache.set_many(
                {
                    f"simulator:sid:{remote.sid}": remote,
                    f"simulator:to:{remote.to}": [*sids[-49:], remote.sid],
                },
                self.KEEP,
            )
        except Exception as exc:  # A dead cache: this process still remembers.
            log.warning("the simulator could not share message %s: %s", remote.sid, exc)

    def _shared(self, key):
        try:
            return cache.get(key)
        except Exception:  # A dead cache: what this process remembers is all there is.
            return None

    def fetch(self, sid):
        return self.remote.get(sid) or self._shared(f"simulator:sid:{sid}")

    def history(self, *, after, before):
        """The account's history under the number plan (deliverability.number_plan.history_for)
        between every contact and the first sender of its organization, newest first.

        Deterministic: a message's SID and day depend only on the numbers and the day it is
        asked on, so a second import finds the same messages."""
        from contacts.models import Contact  # By name at call time: the models import this.
        from conversations.models import Sender

        today = datetime.combine(datetime.now(UTC).date(), time.min, tzinfo=UTC)
        days = {today - timedelta(days=n) for n in HISTORY_DAYS_AGO}
        if not any(after - timedelta(days=1) < day < before for day in days):
            return  # Nothing happened on these days: no need to read the contacts.
        first_senders = {}
        for sender in Sender.objects.exclude(phone_number="").order_by("id"):
            first_senders.setdefault(sender.organization_id, sender.phone_number)
        holders = (
            Contact.objects.filter(organization_id__in=first_senders)
            .exclude(phone_e164="")
            .values_list("organization_id", "phone_e164")
            .distinct()
        )
        found = []
        for org_id, phone in holders.iterator(chunk_size=2000):
            ours = first_senders[org_id]
            for index, entry in enumerate(history_for(phone)):
                sent_at = today - timedelta(days=entry.days_ago) + entry.at
                if not after <= sent_at < before:
                    continue
                digest = hashlib.sha256(f"{ours}:{phone}:{index}".encode())
                found.append(
                    HistoryMessage(
                        sid="SM" + digest.hexdigest()[:32],
                        direction="inbound" if entry.inbound else "outbound",
                        from_=phone if entry.inbound else ours,
                        to=ours if entry.inbound else phone,
                        body=entry.body,
                        status=entry.status,
                        error_code=entry.error_code,
                        sent_at=sent_at,
                    )
                )
        yield from sorted(found, key=lambda m: m.sent_at, reverse=True)

    def find(self, *, to, from_, after):
        sids = set(self._shared(f"simulator:to:{to}") or [])
        sids |= {sid for sid, m in self.remote.items() if m.to == to}
        return [m for m in (self.fetch(sid) for sid in sids) if m is not None]


_backends = {}
_backends_lock = threading.Lock()
BACKENDS = {"twilio": TwilioBackend, "simulator": SimulatorBackend, "locmem": LocmemBackend}


def get_backend(name=None):
    """The configured backend (one instance per process and name)."""
    name = name or settings.SMS_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"SMS_BACKEND must be one of {', '.join(BACKENDS)}, not {name!r}")
    if name == "twilio":
        # Cheap: the client is the thread's own, made again only when the settings change.
        return TwilioBackend()
    with _backends_lock:
        if name not in _backends:
            _backends[name] = BACKENDS[name]()
        return _backends[name]
