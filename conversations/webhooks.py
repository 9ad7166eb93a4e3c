"""Twilio webhooks (SPEC §6): status callbacks and inbound messages.

Each request is checked (X-Twilio-Signature, or the shared-key HMAC-SHA256 signature when Twilio
says so), stored as a MessageEvent once per idempotency key, and answered at once; the work
happens in a task. A duplicate is a success: Twilio needs a 2xx or it keeps retrying.
"""

import hmac
import logging

from csp.decorators import csp_exempt
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import (
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from conversations import event_store
from conversations.event_requests import request_event_processing
from conversations.models import MessageEvent

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


_SETTINGS_META_KEY = "HTTP_" + SIGNATURE_SETTINGS_HEADER.upper().replace("-", "_")


def _signing_secret(settings_header):
    """The auth token signs classic requests; the shared key signs the newer ones."""
    if settings_header:
        return settings.TWILIO_WEBHOOK_SIGNING_KEY
    if settings.TWILIO_AUTH_TOKEN:
        return settings.TWILIO_AUTH_TOKEN
    if settings.SMS_BACKEND == "simulator" or settings.DEBUG:
        return settings.SIMULATOR_AUTH_TOKEN
    return ""


def signature_is_valid(request):
    """Check the request as Twilio signed it: PUBLIC_BASE_URL + path + query, every parameter.

    The signature of the URL as configured is computed first, once; only when it does not match
    (or the request signs its body instead) does RequestValidator.validate try its other forms
    of the URL (with and without the port). Same answer, half the hashing on the hot path.
    """
    # From META: building request.headers costs more than the rest of the check.
    signature = request.META.get("HTTP_X_TWILIO_SIGNATURE", "")
    settings_header = request.META.get(_SETTINGS_META_KEY, "")
    secret = _signing_secret(settings_header)
    if not signature or not secret:
        return False
    url = settings.PUBLIC_BASE_URL + request.get_full_path()
    algorithm = get_signature_algorithm(settings_header)
    validator = RequestValidator(secret)
    try:
        if "bodySHA256" not in request.GET:
            expected = validator.compute_signature(url, request.POST, algorithm)
            if hmac.compare_digest(expected.encode(), signature.encode()):
                return True
        return validator.validate(url, request.POST, signature, algorithm=algorithm)
    except ValueError as exc:  # an algorithm we do not know (MD5, say): not Twilio's signature
        log.warning("rejected a webhook signed with an unsupported algorithm: %s", exc)
        return False


def _store(request, kind):
    """Store the event; a connection the database dropped (a restart, a failover) is opened
    again once. Storing twice is harmless: the idempotency key keeps one row."""
    for attempt in (1, 2):
        try:
            return event_store.event_store(kind=kind, params=request.POST, query=request.GET)
        except (OperationalError, InterfaceError):
            if attempt == 2 or connection.in_atomic_block:
                raise  # inside a transaction there is nothing to open again
            connection.close()
    return None


def _receive(request, kind):
    if not signature_is_valid(request):
        log.warning("rejected a %s webhook with a bad or missing signature", kind)
        return HttpResponseForbidden("Invalid signature")
    try:
        stored = _store(request, kind)
    except event_store.MalformedWebhook as exc:
        log.warning("refused a %s webhook: %s", kind, exc)
        return HttpResponseBadRequest(str(exc))
    except (OperationalError, InterfaceError) as exc:
        # Not stored: Twilio must try again (it retries a 5xx), so the answer is not a 2xx.
        log.error("could not store a %s webhook, the database is unavailable: %s", kind, exc)
        response = HttpResponse("Temporarily unavailable", status=503)
        response["Retry-After"] = "5"
        return response
    if stored:
        request_event_processing()
    return None


# Twilio reads no HTML: no Content-Security-Policy to build for its answers.
@csp_exempt()
@csp_exempt(REPORT_ONLY=True)
@csrf_exempt
@require_POST
def status_callback(request):
    refused = _receive(request, MessageEvent.Kind.STATUS)
    return refused or HttpResponse(status=204)


@csp_exempt()
@csp_exempt(REPORT_ONLY=True)
@csrf_exempt
@require_POST
def inbound_message(request):
    refused = _receive(request, MessageEvent.Kind.INBOUND)
    return refused or HttpResponse(EMPTY_TWIML, content_type="text/xml")
