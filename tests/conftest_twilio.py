"""Fixtures for tests against Twilio's contract mock (tests marked `twilio_mock`).

A plugin, not part of tests/conftest.py: modules that need it say
`pytest_plugins = ["tests.conftest_twilio"]`. The mocks start once per test session, on the
first test that asks for one, and stop at the end of the session.
"""

from dataclasses import dataclass, field

import pytest
from twilio.http.http_client import TwilioHttpClient

from tests.twilio_mock import ACCOUNT_SID, AUTH_TOKEN, MockUnavailable, start_mock


def _serve(dynamic):
    try:
        server = start_mock(dynamic=dynamic)
    except MockUnavailable as problem:
        pytest.fail(f"the Twilio contract mock did not start: {problem}", pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def twilio_mock_url():
    """The base URL of the mock answering with the contract's examples."""
    yield from _serve(dynamic=False)


@pytest.fixture(scope="session")
def twilio_dynamic_mock_url():
    """The base URL of the mock answering with values generated from the schemas."""
    yield from _serve(dynamic=True)


def _use_twilio(settings, base_url):
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_BASE_URL = base_url
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN


@pytest.fixture
def twilio_static(settings, twilio_mock_url):
    """The project talks to the static mock as if it were Twilio."""
    _use_twilio(settings, twilio_mock_url)
    return twilio_mock_url


@pytest.fixture
def twilio_dynamic(settings, twilio_dynamic_mock_url):
    """The project talks to the dynamic mock as if it were Twilio."""
    _use_twilio(settings, twilio_dynamic_mock_url)
    return twilio_dynamic_mock_url


@dataclass
class Traffic:
    """The requests twilio-python sent (after TWILIO_BASE_URL rewrote them).

    `example` asks Prism for one of the contract's named examples (its `Prefer` header) instead
    of the first one.
    """

    requests: list = field(default_factory=list)
    example: str = ""
    # (url, query parameters, body) of each request, for what a test must see was sent.
    sent: list = field(default_factory=list)

    def to(self, path_part):
        return [url for _, url in self.requests if path_part in url]


@pytest.fixture
def twilio_traffic(monkeypatch):
    traffic = Traffic()
    send = TwilioHttpClient.request

    def request(client, method, url, *args, **kwargs):
        traffic.requests.append((method, url))
        traffic.sent.append((url, kwargs.get("params") or {}, kwargs.get("data")))
        if traffic.example:
            kwargs["headers"] = {
                **(kwargs.get("headers") or {}),
                "Prefer": f"example={traffic.example}",
            }
        return send(client, method, url, *args, **kwargs)

    monkeypatch.setattr(TwilioHttpClient, "request", request)
    return traffic
