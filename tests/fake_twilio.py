"""A Twilio Messages API on a loopback port that misbehaves on cue.

The contract mock answers every call with the same example; fault tests need a Twilio that
remembers what it took and fails the way the real one does: a 500 before or after it created
the message, a 429, an answer that never comes (before or after the message was created).
Each number gets its own list of faults, used one per create call; when the list is empty the
create succeeds. Every create call is recorded, so a test can count the messages each number
really received.

Each create call is recorded as arriving when its first bytes reached the stand-in's socket
(the kernel's receive time, where the platform gives it): the moment Twilio would count the
call, not when this Python server, sharing the machine and its own interpreter lock, got round
to reading it.

Only what the twilio backend calls is served: create, fetch by SID, and list by To; and the
Lookup v2 line-type fetch, which answers "mobile". With `callbacks` (a list of (status, delay
in seconds)) it posts a signed status callback of each status to a created message's
StatusCallback that long after the create, as Twilio does.
"""

import contextlib
import email.utils
import heapq
import io
import json
import socket
import struct
import sys
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "fa" * 16
AUTH_TOKEN = "fake-twilio-auth-token"

# What each fault does: (HTTP status or None for no answer, whether the message is created).
FAULTS = {
    "500": (500, False),
    "500-after-create": (500, True),
    "503": (503, False),
    "429": (429, False),
    "hang": (None, False),
    "hang-after-create": (None, True),
}
ERRORS = {
    500: {"code": 20500, "message": "Internal Server Error"},
    503: {"code": 20503, "message": "Service Unavailable"},
    429: {"code": 20429, "message": "Too Many Requests"},
}


# The socket option (and control message) that makes the kernel stamp what a socket receives,
# as a struct timespec of the real-time clock (the socket module does not name it).
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None


class _StampedReader(io.RawIOBase):
    """A connection's reads, keeping the kernel's receive time of the first bytes read since
    `first` was last cleared (None when the platform gives none)."""

    def __init__(self, sock):
        self.sock, self.first = sock, None
        self.stamped = False
        if SO_TIMESTAMPNS is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.stamped = True

    def readable(self):
        return True

    def readinto(self, buffer):
        if not self.stamped:
            return self.sock.recv_into(buffer)
        size, ancillary, _, _ = self.sock.recvmsg_into([buffer], socket.CMSG_SPACE(16))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and self.first is None:
                seconds, nanoseconds = struct.unpack("qq", data[:16])
                self.first = seconds + nanoseconds / 1e9
        return size


@dataclass
class Attempt:
    to: str
    body: str
    fault: str  # "" for a create that succeeded
    at: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)  # the same moment, as other processes see it


class FakeTwilio:
    def __init__(self, hang_seconds=3.0, latency=0.0, callbacks=(), callback_threads=8):
        self.hang_seconds = hang_seconds
        self.latency = latency  # seconds each create takes to answer, as Twilio's do
        self.callbacks = list(callbacks)  # (status, seconds after the create)
        self.callback_threads = callback_threads
        self.faults = defaultdict(list)  # to -> faults still to come
        self.messages = {}  # sid -> resource
        self.attempts = []
        self.callbacks_posted = 0
        self.callbacks_failed = 0
        self.lock = threading.Lock()
        self.server = None
        self._due = []  # (when, n, url, params): callbacks to post
        self._due_ready = threading.Condition()
        self._order = 0
        self._stopping = False

    # Setting up and reading ------------------------------------------------------------------

    def fail(self, to, *faults):
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; choose from {', '.join(FAULTS)}")
        with self.lock:
            self.faults[to].extend(faults)

    def created_for(self, to):
        """The messages this number really received (one per successful or faulty create)."""
        with self.lock:
            return [m for m in self.messages.values() if m["to"] == to]

    def attempts_for(self, to):
        with self.lock:
            return [a for a in self.attempts if a.to == to]

    @property
    def url(self):
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go as written, as Twilio's do

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                self.reader = _StampedReader(self.connection)
                self.rfile = io.BufferedReader(self.reader)

            def handle_one_request(self):
                self.reader.first = None  # this request's first bytes stamp it
                try:
                    super().handle_one_request()
                except OSError:
                    # The connection is gone (the client reset it, or it was closed as the
                    # stand-in stopped): the end of this connection, as for a real server.
                    self.close_connection = True

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                fake._create(self, {key: values[-1] for key, values in form.items()})

            def do_GET(self):
                fake._get(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A short poll interval: stop() waits for one, at the end of every test that uses it.
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()
        if self.callbacks:
            for _ in range(self.callback_threads):
                threading.Thread(target=self._post_callbacks, daemon=True).start()
        return self

    def stop(self):
        with self._due_ready:
            self._stopping = True
            self._due_ready.notify_all()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # Status callbacks ------------------------------------------------------------------------

    def _schedule_callbacks(self, message, callback_url):
        if not self.callbacks or not callback_url:
            return
        url = callback_url.split("#", 1)[0]  # Twilio posts without the fragment
        now = time.monotonic()
        with self._due_ready:
            for status, delay in self.callbacks:
                params = {
                    "AccountSid": ACCOUNT_SID,
                    "MessageSid": message["sid"],
                    "SmsSid": message["sid"],
                    "MessageStatus": status,
                    "SmsStatus": status,
                    "To": message["to"],
                    "From": message["from"],
                    "ApiVersion": "2010-04-01",
                }
                self._order += 1
                heapq.heappush(self._due, (now + delay, self._order, url, params))
            self._due_ready.notify_all()

    def _post_callbacks(self):
        validator = RequestValidator(AUTH_TOKEN)
        while True:
            with self._due_ready:
                while not self._stopping and (not self._due or self._due[0][0] > time.monotonic()):
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._due_ready.wait(wait)
                if self._stopping:
                    return
                _, _, url, params = heapq.heappop(self._due)
            request = urllib.request.Request(
                url,
                data=urlencode(params).encode(),
                headers={"X-Twilio-Signature": validator.compute_signature(url, params)},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    ok = answer.status < 300
            except OSError:
                ok = False
            with self.lock:
                if ok:
                    self.callbacks_posted += 1
                else:
                    self.callbacks_failed += 1

    # The API ---------------------------------------------------------------------------------

    def _create(self, handler, form):
        if not urlsplit(handler.path).path.endswith("/Messages.json"):
            return self._answer(handler, 404, {"code": 20404, "message": "Not found"})
        to, body = form.get("To", ""), form.get("Body", "")
        arrived = {}
        received = getattr(getattr(handler, "reader", None), "first", None)
        if received is not None:  # the kernel's time, on both clocks
            arrived = {"wall": received, "at": time.monotonic() - (time.time() - received)}
        with self.lock:
            fault = self.faults[to].pop(0) if self.faults[to] else ""
            self.attempts.append(Attempt(to=to, body=body, fault=fault, **arrived))
            status, creates = FAULTS.get(fault, (201, True))
            message = self._new_message(form) if creates else None
        if status is None:
            time.sleep(self.hang_seconds)  # the client gives up first
            with contextlib.suppress(OSError):
                handler.connection.close()
            return None
        if status != 201:
            error = dict(ERRORS[status], status=status, more_info="https://www.twilio.com/docs")
            return self._answer(handler, status, error)
        if self.latency:
            time.sleep(self.latency)
        self._answer(handler, 201, message)
        self._schedule_callbacks(message, form.get("StatusCallback", ""))
        return None

    def _new_message(self, form):
        now = email.utils.formatdate(usegmt=True)
        sid = "SM" + uuid.uuid4().hex
        message = {
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "to": form.get("To", ""),
            "from": form.get("From") or "+14155550100",
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body", ""),
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        }
        self.messages[sid] = message
        return message

    def _get(self, handler):
        parts = urlsplit(handler.path)
        if "/PhoneNumbers/" in parts.path:
            if self.latency:
                time.sleep(self.latency)
            phone = unquote(parts.path.rsplit("/", 1)[-1])
            answer = {
                "phone_number": phone,
                "valid": True,
                "country_code": "US",
                "line_type_intelligence": {
                    "type": "mobile",
                    "carrier_name": "Stand-in Wireless",
                    "error_code": None,
                },
                "url": f"https://lookups.twilio.com/v2/PhoneNumbers/{phone}",
            }
            return self._answer(handler, 200, answer)
        if parts.path.endswith("/Messages.json"):
            to = (parse_qs(parts.query).get("To") or [""])[0]
            with self.lock:
                listed = [m for m in self.messages.values() if not to or m["to"] == to]
            page = {
                "messages": list(reversed(listed))[:50],
                "page": 0,
                "page_size": 50,
                "first_page_uri": parts.path,
                "next_page_uri": None,
                "previous_page_uri": None,
                "uri": handler.path,
                "start": 0,
                "end": len(listed),
            }
            return self._answer(handler, 200, page)
        sid = parts.path.rsplit("/", 1)[-1].removesuffix(".json")
        with self.lock:
            message = self.messages.get(sid)
        if message is None:
            missing = {"code": 20404, "message": "Not found", "status": 404}
            return self._answer(handler, 404, missing)
        return self._answer(handler, 200, message)

    @staticmethod
    def _answer(handler, status, payload):
        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return None
