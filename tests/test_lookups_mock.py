"""Line-type lookups and carrier deactivation lists against Twilio's contract mock (Prism),
static and --dynamic (odd values on purpose). Run with TEST_SERVICES=twilio_mock."""

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone

from deliverability import deactivations, eligibility, tasks
from deliverability.lookups import lookup_line_type
from deliverability.models import LineType, NumberFacts, NumberState
from tests.factories import make_contact

pytestmark = pytest.mark.twilio_mock

TWILIO_MOCK = Path(__file__).resolve().parents[2] / "shared" / "tools" / "twilio-mock"
PHONE = "+12125550123"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(*flags):
    port = _free_port()
    started = subprocess.run(
        [str(TWILIO_MOCK), "--port", str(port), "--background", *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if started.returncode != 0:
        pytest.fail(f"the Twilio contract mock did not start: {started.stderr.strip()}")
    return f"http://127.0.0.1:{port}", int(started.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["static", "dynamic"])
def mock(request):
    url, pid = _start(*(["--dynamic"] if request.param == "dynamic" else []))
    try:
        yield request.param, url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@pytest.fixture(autouse=True)
def _twilio(settings, mock):
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_BASE_URL = mock[1]
    settings.TWILIO_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
    settings.TWILIO_AUTH_TOKEN = "mock-auth-token"


def test_lookups_never_raise_and_store_only_known_types(org, mock):
    make_contact(org, PHONE)
    for _ in range(10 if mock[0] == "dynamic" else 2):
        tasks.lookup_number(PHONE, True)
        facts = NumberFacts.objects.get(phone=PHONE)
        assert facts.line_type in LineType.values
        assert facts.looked_up_at is not None
        # An unknown or odd type never blocks sending; only the types that cannot take SMS do.
        verdict = eligibility.check_number(org=org, phone=PHONE)
        if facts.is_sms_capable:
            assert verdict is None
        else:
            assert NumberState.objects.get(organization=org, phone=PHONE).invalid_code == "lookup"


def test_the_lookup_answers_through_the_contract(mock):
    result = lookup_line_type(PHONE)
    assert result.line_type in LineType.values
    if mock[0] == "static":
        # The contract's plain example carries no line_type_intelligence: stored as unknown.
        assert result.line_type in {"unknown", "nonFixedVoip"}


def test_a_fresh_lookup_is_not_repeated_and_an_old_one_is(org, mock, monkeypatch):
    calls = []
    real = tasks.lookup
    monkeypatch.setattr(tasks, "lookup", lambda request: calls.append(request) or real(request))
    tasks.lookup_number(PHONE)
    tasks.lookup_number(PHONE)
    assert len(calls) == 1
    NumberFacts.objects.filter(phone=PHONE).update(looked_up_at=timezone.now() - timedelta(days=91))
    tasks.lookup_number(PHONE)
    assert len(calls) == 2


class _ListHandler(http.server.BaseHTTPRequestHandler):
    body = b"+12125550196\n2125550197\n"

    def do_GET(self):  # noqa: N802 - the standard library's name
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def list_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ListHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/list.txt"
    server.shutdown()


# The dynamic mock's redirect_to is a random string: the contract's own example is followed.
@pytest.mark.parametrize("mock", ["static"], indirect=True)
def test_the_deactivation_list_is_fetched_through_the_307_and_downloaded(
    org, mock, list_server, monkeypatch
):
    followed = []
    real_get = requests.get

    def download(url, timeout):
        # The contract's redirect_to names an unreachable host; the file is served here.
        followed.append(url)
        return real_get(list_server, timeout=timeout)

    monkeypatch.setattr(deactivations.requests, "get", download)
    make_contact(org, "+12125550196")
    make_contact(org, "+12125550101")
    result = deactivations.import_deactivations(date(2026, 11, 21))
    assert followed and followed[0].startswith("https://")
    assert (result.listed, result.opted_out) == (2, 1)
    state = NumberState.objects.get(organization=org, phone="+12125550196")
    assert state.opt_out_reason == "deactivated"
    again = deactivations.import_deactivations(date(2026, 11, 21))
    assert again.already_imported
