"""`manage.py demo --no-serve`: two organizations in every state, idempotent, fixed logins."""

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command

from contacts.models import Contact, Membership, Organization
from deliverability.checks import check_contacts

pytestmark = pytest.mark.django_db


def _counts():
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


@pytest.fixture
def demo(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("demo", "--no-serve")


def test_a_second_run_changes_nothing(demo):
    before = _counts()
    call_command("demo", "--no-serve")
    assert _counts() == before


def test_it_prints_the_logins(settings, capsys):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("demo", "--no-serve")
    out = capsys.readouterr().out
    for login in ("demo / demo", "frontdesk / demo", "other / demo", "admin / admin"):
        assert login in out


@pytest.mark.parametrize(
    "username, password, slug, role",
    [
        ("demo", "demo", "riverside-fitness", "manager"),
        ("frontdesk", "demo", "riverside-fitness", "staff"),
        ("other", "demo", "harbor-physio", "manager"),
    ],
)
def test_the_logins_have_their_roles(demo, username, password, slug, role):
    user = get_user_model().objects.get(username=username)
    assert user.check_password(password)
    assert [(m.organization.slug, m.role) for m in Membership.objects.filter(user=user)] == [
        (slug, role)
    ]


def test_admin_is_a_superuser(demo):
    user = get_user_model().objects.get(username="admin")
    assert user.check_password("admin")
    assert user.is_superuser and user.is_staff


def test_harbor_sees_none_of_riversides_contacts(demo, client):
    client.force_login(get_user_model().objects.get(username="other"))
    riverside = Contact.objects.filter(organization__slug="riverside-fitness").first()
    assert client.get(f"/contacts/{riverside.pk}/").status_code == 404
    page = client.get("/contacts/?filter=all")
    assert "Riverside" not in page.content.decode()
    assert riverside.last_name not in page.content.decode()


def test_every_seeded_state_gets_its_skip_reason(demo):
    org = Organization.objects.get(slug="riverside-fitness")
    reasons = dict(
        check_contacts(Contact.objects.all(), org=org).values_list("external_id", "skip_reason")
    )
    assert reasons["R001"] is None
    assert reasons["R006"] == "marked_invalid"  # manual
    assert reasons["R007"] == "marked_invalid"  # landline by lookup
    assert reasons["R008"] == "marked_invalid"  # 21614
    assert reasons["R010"] == "recent_errors"
    assert reasons["R011"] == "global_lifetime_error_count"
    assert reasons["R014"] == "opted_out"  # carrier STOP
    assert reasons["R015"] == "opted_out"  # deactivated
    assert reasons["R016"] == "opted_out"  # STOP keyword
    assert reasons["R017"] == "opted_out"  # staff
    assert reasons["R018"] == "paused"
    assert reasons["R019"] is None  # opted back in with YES
    assert reasons["R022"] == "invalid_number"


def test_message_history_covers_every_status(demo):
    from conversations.models import Message

    statuses = set(Message.objects.values_list("status", flat=True))
    assert {
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
    } <= statuses
