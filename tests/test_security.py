"""Hostile input and the headers every page carries (SPEC §8)."""

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from contacts.models import Contact
from conversations.models import Message
from tests.factories import make_contact, make_message, make_sender

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "http://testserver"
TOKEN = "security-token"
PAGES = [
    "/",
    "/conversations/",
    "/conversations/failed/",
    "/conversations/review/",
    "/contacts/",
    "/contacts/import/",
    "/broadcasts/",
    "/reports/opt_outs/",
    "/reports/health/",
    "/reports/delivery/",
    "/reports/staff/",
    "/accounts/login/",
]


@pytest.fixture
def pages(org, owner):
    sender = make_sender(org, throughput=100)
    contact = make_contact(org, "+12125550101")
    make_message(contact, sender, status=Message.Status.UNDELIVERED, error_code=30003)
    return [*PAGES, f"/conversations/{contact.conversation.pk}/", f"/contacts/{contact.pk}/"]


def test_every_page_carries_a_csp_without_inline_script(owner_client, pages):
    for url in pages:
        response = owner_client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, url
        html = response.content.decode()
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts and all("src=" in tag for tag in scripts), url
        assert not re.search(r"\son[a-z]+=", html), url  # no inline event handlers
        assert not re.search(r'\sstyle="', html), url  # no inline styles either


def test_security_headers(owner_client):
    response = owner_client.get("/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_check_deploy_is_clean_in_production_mode():
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "x" * 60 + "production-like-secret-key",
        "ALLOWED_HOSTS": "reachable.example.com",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_login_is_throttled_per_user_and_address(client, db, settings, django_user_model):
    settings.AXES_FAILURE_LIMIT = 3
    django_user_model.objects.create_user("front", password="right-password")
    for _ in range(3):
        client.post("/accounts/login/", {"username": "front", "password": "wrong"})
    locked = client.post("/accounts/login/", {"username": "front", "password": "right-password"})
    assert locked.status_code == 429
    other = client.post("/accounts/login/", {"username": "someone", "password": "wrong"})
    assert other.status_code == 200  # other users from the same address can still try


def test_normal_use_never_locks_anyone_out(client, db, django_user_model):
    django_user_model.objects.create_user("front", password="right-password")
    for _ in range(5):
        client.post("/accounts/login/", {"username": "front", "password": "typo"})
        ok = client.post("/accounts/login/", {"username": "front", "password": "right-password"})
        assert ok.status_code == 302
        client.post("/accounts/logout/")


# Fuzzed input: never a 500 ------------------------------------------------------------------------

fuzz_text = st.text(max_size=60)
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "MessageSid",
                "MessageStatus",
                "ErrorCode",
                "To",
                "From",
                "RawDlrDoneDate",
                "Body",
                "OptOutType",
                "NumSegments",
                "m",
            ]
        ),
        fuzz_text,
        max_size=8,
    ),
    query=fuzz_text,
)
def test_signed_webhooks_with_any_parameters_answer_without_a_500(
    client, org, settings, params, query
):
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.TWILIO_AUTH_TOKEN = TOKEN
    if not org.senders.exists():
        make_sender(org, phone_number="+16175550100")
    clean = {k: v.replace("\x00", "") for k, v in params.items()}
    for path in ("/webhooks/twilio/status/", "/webhooks/twilio/inbound/"):
        url = f"{path}?{urlencode({'m': query})}" if query else path
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + url, clean)
        response = client.post(url, clean, HTTP_X_TWILIO_SIGNATURE=signature)
        assert response.status_code < 500
        assert response.status_code != 403, "a correctly signed request is accepted"


@FUZZ
@given(
    data=st.dictionaries(
        st.sampled_from(
            [
                "q",
                "filter",
                "page",
                "status",
                "reason",
                "category",
                "date_from",
                "date_to",
                "sender",
                "broadcast",
                "period",
                "from",
                "to",
                "actor",
                "action",
                "outcome",
            ]
        ),
        fuzz_text,
        max_size=6,
    )
)
def test_list_pages_with_any_query_answer_without_a_500(owner_client, org, data):
    clean = {k: v.replace("\x00", "") for k, v in data.items()}
    for url in (
        "/conversations/",
        "/conversations/failed/",
        "/contacts/",
        "/reports/delivery/",
        "/reports/staff/",
    ):
        assert owner_client.get(url, clean).status_code < 500


@FUZZ
@given(
    data=st.dictionaries(
        st.sampled_from(
            [
                "body",
                "phone",
                "note",
                "days",
                "sender",
                "audience",
                "filter",
                "q",
                "action",
                "message",
                "next",
                "page",
            ]
        ),
        fuzz_text,
        max_size=6,
    )
)
def test_forms_with_any_values_answer_without_a_500(owner_client, org, data):
    contact = Contact.objects.filter(organization=org).first() or make_contact(org, "+12125550177")
    clean = {k: v.replace("\x00", "") for k, v in data.items()}
    urls = [
        reverse("deliverability:contact_action", args=[contact.pk, "pause"]),
        reverse("deliverability:contact_action", args=[contact.pk, "lift-opt-out"]),
        reverse("contacts:change_phone", args=[contact.pk]),
        reverse("broadcasts:preview"),
        reverse("broadcasts:sample"),
        reverse("conversations:failed_bulk"),
        reverse("conversations:compose_hints"),
    ]
    for url in urls:
        assert owner_client.post(url, clean).status_code < 500


def test_favicon_ico_leads_to_the_icon_without_logging_in(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("reachable/favicon.svg")
