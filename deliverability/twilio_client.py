"""The one Twilio client factory of the project.

Every Twilio REST call (api, lookups, messaging) goes through `twilio_client()`. With
TWILIO_BASE_URL set, each request keeps its path and query but goes to that base URL instead
of Twilio's host (the contract mock in tests, a proxy in some deployments).
"""

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client


class BaseUrlHttpClient(TwilioHttpClient):
    """A TwilioHttpClient that sends every request to `base_url`, path unchanged."""

    def __init__(self, base_url, **kwargs):
        super().__init__(**kwargs)
        parts = urlsplit(base_url.rstrip("/"))
        self.scheme, self.netloc, self.prefix = parts.scheme, parts.netloc, parts.path

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        rewritten = urlunsplit(
            (self.scheme, self.netloc, self.prefix + parts.path, parts.query, parts.fragment)
        )
        return super().request(method, rewritten, *args, **kwargs)


def twilio_client(timeout=None):
    """A twilio-python Client with the configured credentials, base URL and timeout (a send
    must not hang a worker forever)."""
    timeout = timeout or settings.TWILIO_TIMEOUT
    if settings.TWILIO_BASE_URL:
        http_client = BaseUrlHttpClient(settings.TWILIO_BASE_URL, timeout=timeout)
    else:
        http_client = TwilioHttpClient(timeout=timeout)
    return Client(
        settings.TWILIO_ACCOUNT_SID or None,
        settings.TWILIO_AUTH_TOKEN or None,
        http_client=http_client,
    )
