"""Play the member's side in the demo: a reply (STOP, START, HELP or any text) posted to our own
inbound webhook, signed as the simulator signs its callbacks, through the whole real path
(signature check, storage, the reply classifier). Only under the simulator backend."""

import secrets

from django.conf import settings
from django.urls import reverse
from twilio.request_validator import RequestValidator

from conversations.sending import default_sender
from conversations.tasks import post_in_process


def simulator_on():
    return settings.SMS_BACKEND == "simulator"


def member_reply(*, org, contact, body):
    """Post `body` as an inbound message from the contact's number; returns the HTTP status
    our webhook answered."""
    sender = default_sender(org)
    sid = "SM" + secrets.token_hex(16)
    params = {
        "AccountSid": settings.TWILIO_ACCOUNT_SID or "AC" + "0" * 32,
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "From": contact.phone_e164,
        "To": sender.address if sender else "",
        "Body": body,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }
    url = settings.PUBLIC_BASE_URL + reverse("webhooks:inbound")
    token = settings.TWILIO_AUTH_TOKEN or settings.SIMULATOR_AUTH_TOKEN
    signature = RequestValidator(token).compute_signature(url, params)
    return post_in_process(url, params, {"HTTP_X_TWILIO_SIGNATURE": signature})
