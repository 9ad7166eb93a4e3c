"""Replaying Twilio's webhooks as Twilio sends them: form-encoded POSTs, signed with
RequestValidator.compute_signature over the public URL and every parameter."""

import uuid
from urllib.parse import urlencode

from django.conf import settings
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token-for-webhooks"
PUBLIC_BASE_URL = "https://reachable.example.com"
STATUS_PATH = "/webhooks/twilio/status/"
INBOUND_PATH = "/webhooks/twilio/inbound/"


def new_sid(prefix="SM"):
    return prefix + uuid.uuid4().hex


def status_params(
    *, sid, status, to="+12125550100", from_="+14155550100", error_code=None, **extra
):
    """The form Twilio posts to a StatusCallback for an SMS."""
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "From": from_,
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": to,
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    params.update(extra)
    return params


def inbound_params(*, to, from_, body, sid=None, **extra):
    """The form Twilio posts to a number's incoming-message webhook."""
    sid = sid or new_sid()
    params = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": from_,
        "FromCountry": "US",
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": to,
        "ToCountry": "US",
    }
    params.update(extra)
    return params


def signature(url, params, *, token=None, algorithm=None):
    return RequestValidator(token or settings.TWILIO_AUTH_TOKEN).compute_signature(
        url, params, algorithm
    )


def post_form(client, path, params, headers=None):
    """POST `params` form-encoded to `path` (which may carry a query string)."""
    return client.post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        headers=headers or {},
    )


def post_signed(
    client,
    path,
    params,
    *,
    signed_url=None,
    token=None,
    algorithm=None,
    headers=None,
):
    """POST as Twilio would, signed for `signed_url` (by default PUBLIC_BASE_URL + path)."""
    url = signed_url or settings.PUBLIC_BASE_URL + path
    headers = {"X-Twilio-Signature": signature(url, params, token=token, algorithm=algorithm)} | (
        headers or {}
    )
    return post_form(client, path, params, headers)


def status_path(message=None):
    """The StatusCallback path we give Twilio: our own message id in the query."""
    return f"{STATUS_PATH}?m={message.pk}" if message is not None else STATUS_PATH
