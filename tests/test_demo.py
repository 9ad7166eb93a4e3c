"""`manage.py demo --no-serve`: two organizations in every state, idempotent, fixed logins."""

import io

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from contacts.management.commands.demo import public_base_url
from contacts.models import Contact, Membership, Organization
from conversations.broadcasts import in_window
from conversations.models import Conversation, Message, MessageEvent
from deliverability.eligibility import check_contacts
from deliverability.models import AuditEvent, NumberState, OrgAlert
from tests.isolation import rows_for_the_module

pytestmark = pytest.mark.django_db

APPS = ("contacts", "conversations", "deliverability")


def _counts():
    models = [m for m in apps.get_models() if m._meta.app_label in APPS]
    return {m._meta.label: m.objects.count() for m in [*models, get_user_model()]}


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """The demo, seeded once for the module: it takes a second. Its value is what the first
    run printed."""
    printed = io.StringIO()
    with rows_for_the_module(django_db_blocker):
        call_command("demo", "--no-serve", stdout=printed)
        yield printed.getvalue()


def _skip_reasons(slug):
    org = Organization.objects.get(slug=slug)
    contacts = check_contacts(Contact.objects.all(), org=org)
    return dict(contacts.values_list("external_id", "skip_reason"))


def test_it_prints_the_logins_and_no_url_when_it_does_not_serve(demo):
    out = demo
    assert "Open" not in out and "http://" not in out
    for login in ("demo / demo", "frontdesk / demo", "other / demo", "admin / admin"):
        assert login in out


@pytest.mark.parametrize(
    "addrport, url",
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("8001", "http://127.0.0.1:8001"),
        ("0.0.0.0:9000", "http://127.0.0.1:9000"),
        ("localhost:8002", "http://localhost:8002"),
    ],
)
def test_the_public_base_url_follows_the_addrport(addrport, url):
    assert public_base_url(addrport) == url


def test_the_demo_sends_around_the_clock(demo):
    org = Organization.objects.get(slug="riverside-fitness")
    night = timezone.now().astimezone(org.tzinfo).replace(hour=2, minute=30)
    assert in_window(org, night)


def test_a_second_run_changes_nothing(demo):
    before = _counts()
    states = list(NumberState.objects.order_by("pk").values())
    trail = list(AuditEvent.objects.order_by("pk").values())
    call_command("demo", "--no-serve")
    assert _counts() == before
    assert list(NumberState.objects.order_by("pk").values()) == states
    assert list(AuditEvent.objects.order_by("pk").values()) == trail


def test_it_seeds_both_organizations(demo):
    riverside = Organization.objects.get(slug="riverside-fitness")
    harbor = Organization.objects.get(slug="harbor-physio")
    assert riverside.name == "Riverside Fitness"
    assert harbor.name == "Harbor Physio"
    assert Contact.objects.for_org(riverside).count() >= 30
    assert Contact.objects.for_org(harbor).count() >= 10


@pytest.mark.parametrize(
    "username, password, roles",
    [
        ("demo", "demo", {("riverside-fitness", "manager")}),
        ("frontdesk", "demo", {("riverside-fitness", "staff")}),
        ("other", "demo", {("harbor-physio", "manager")}),
        ("admin", "admin", {("riverside-fitness", "manager"), ("harbor-physio", "manager")}),
    ],
)
def test_the_logins_have_their_roles(demo, username, password, roles):
    user = get_user_model().objects.get(username=username)
    assert user.check_password(password)
    assert user.is_superuser == user.is_staff == (username == "admin")
    memberships = Membership.objects.filter(user=user)
    assert {(m.organization.slug, m.role) for m in memberships} == roles


def test_harbors_manager_sees_none_of_riversides_contacts(demo, client):
    client.force_login(get_user_model().objects.get(username="other"))
    page = client.get(reverse("contacts:list"), {"filter": "all"}).content.decode()
    riverside = Contact.objects.filter(organization__slug="riverside-fitness")
    for contact in riverside:
        url = reverse("contacts:detail", args=[contact.pk])
        assert url not in page
        assert client.get(url).status_code == 404
    harbor = Contact.objects.filter(organization__slug="harbor-physio")
    assert all(reverse("contacts:detail", args=[c.pk]) in page for c in harbor)


def test_every_seeded_state_gets_its_skip_reason(demo):
    reasons = _skip_reasons("riverside-fitness")
    expected = {
        "R001": None,  # delivered
        "R013": None,  # VoIP, SMS-capable
        "R019": None,  # texted STOP, then YES
        "R006": "marked_invalid",  # by the front desk
        "R007": "marked_invalid",  # lookup: landline
        "R008": "marked_invalid",  # Twilio 21614
        "R009": "marked_invalid",  # Twilio 30005
        "R022": "invalid_number",  # "n/a"
        "R023": "invalid_number",  # a short code
        "R024": "invalid_number",  # too short
        "R031": "landline",  # looked up by Harbor Physio, never flagged here
        "R018": "paused",
        "R010": "recent_errors",
        "R011": "global_lifetime_error_count",
        "R014": "opted_out",  # carrier STOP
        "R015": "opted_out",  # deactivated
        "R016": "opted_out",  # STOP keyword
        "R017": "opted_out",  # staff
        "R032": "marked_invalid",  # carrier line status: disconnected
        "R033": "opted_out",  # reassigned since consent
    }
    assert {key: reasons[key] for key in expected} == expected
    harbor = _skip_reasons("harbor-physio")
    assert harbor["H001"] is None
    assert harbor["H004"] == "opted_out"
    assert harbor["H007"] == "paused"


def test_each_opt_out_reason_and_invalid_source_is_seeded(demo):
    states = NumberState.objects.filter(organization__slug="riverside-fitness")
    assert set(states.opted_out().values_list("opt_out_reason", flat=True)) == {
        "stop_keyword",
        "carrier_stop",
        "deactivated",
        "staff",
        "reassigned",
    }
    assert set(states.invalid().values_list("invalid_source", "invalid_code")) >= {
        ("manual", ""),
        ("automatic", "lookup"),
        ("automatic", "21614"),
        ("automatic", "line_status"),
        ("automatic", "30005"),
    }


def test_the_audit_trail_says_who_did_what(demo):
    trail = AuditEvent.objects.filter(organization__slug="riverside-fitness")
    people = set(trail.exclude(actor=None).values_list("actor__username", "action", "note"))
    assert ("frontdesk", "mark_invalid", "Wrong number, says the person who answered") in people
    assert ("demo", "opt_out", "Asked at the front desk") in people
    assert ("frontdesk", "pause", "Travelling, back in ten days") in people
    causes = set(trail.filter(actor=None).values_list("system_cause", flat=True))
    assert {"Twilio 21614", "Twilio 21610", "inbound STOP", "line-type lookup"} <= causes
    assert any(cause.startswith("deactivation list ") for cause in causes)


def test_message_history_covers_every_status(demo):
    statuses = set(Message.objects.values_list("status", flat=True))
    assert statuses >= {
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "skipped",
        "canceled",
        "read",
        "received",
    }
    inbound = Message.objects.filter(direction="inbound")
    assert {"STOP", "YES"} <= set(inbound.values_list("body", flat=True))
    assert inbound.filter(blocked=True).exists()
    skipped = Message.objects.filter(status="skipped").values_list("skip_reason", flat=True)
    assert all(skipped)
    assert MessageEvent.objects.filter(idempotency_key__startswith="status:SMdemo").exists()
    assert all(
        len(sid) == 34
        for sid in Message.objects.exclude(provider_sid=None).values_list("provider_sid", flat=True)
    )


def test_conversations_show_their_latest_message(demo):
    for conversation in Conversation.objects.exclude(messages=None):
        latest = conversation.messages.order_by("-created_at", "-id").first()
        assert conversation.last_message_at == latest.created_at
        assert conversation.last_message_preview == latest.body[:160]


def test_riverside_has_an_open_sender_alert(demo):
    alert = OrgAlert.objects.get(organization__slug="riverside-fitness", resolved_at=None)
    assert (alert.kind, alert.error_code) == ("sender_error", "30034")
    assert alert.message.startswith("Sample data from the demo:")
