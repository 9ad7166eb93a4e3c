"""The Django admin: every model listed, phones found by their last digits, state read-only."""

import datetime
import html
import re

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact, ContactImport, ContactImportRow, Organization
from conversations import history
from conversations.models import Broadcast, HistorySeen, Message, MessageEvent
from deliverability import consent, replies
from deliverability.models import (
    AuditEvent,
    DeactivationImport,
    LineType,
    LookupPackages,
    NumberFacts,
    NumberLookup,
    NumberState,
    OptOutReason,
    OrgAlert,
)
from tests.factories import make_contact, make_message, make_sender, sign_in

APPS = ("contacts", "deliverability", "conversations")
MODELS = [model for model in apps.get_models() if model._meta.app_label in APPS]
READ_ONLY = [NumberState, NumberFacts, AuditEvent, Message, MessageEvent]


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    sign_in(client, user)
    return client


@pytest.fixture
def data(org, other_org, owner, outsider):
    """A few rows of every model, in two organizations."""
    sender = make_sender(org)
    ann = make_contact(org, "+12125550101", first_name="Ann")
    bob = make_contact(org, "+12125550177", first_name="Bob")
    cal = make_contact(other_org, "+13125550199", first_name="Cal")
    message = make_message(ann, sender, provider_sid="SM0001")
    make_message(cal, make_sender(other_org), status=Message.Status.FAILED, error_code=30003)
    NumberState.objects.of(org=org, phone=bob.phone_e164).mark_invalid(by=owner, contact=bob)
    NumberState.objects.of(org=other_org, phone=cal.phone_e164).opt_out(
        reason=OptOutReason.STOP_KEYWORD, cause="STOP"
    )
    NumberFacts.objects.create(phone=bob.phone_e164, line_type=LineType.LANDLINE)
    MessageEvent.objects.create(
        kind=MessageEvent.Kind.STATUS,
        idempotency_key="SM0001:delivered",
        message=message,
        organization=org,
        provider_sid="SM0001",
        status="delivered",
        payload={"MessageSid": "SM0001", "MessageStatus": "delivered"},
    )
    Broadcast.objects.create(organization=org, sender=sender, name="Spring hours", body="Hi")
    OrgAlert.objects.create(organization=org, kind=OrgAlert.Kind.SENDER_ERROR, message="21606")
    DeactivationImport.objects.create(date=datetime.date(2026, 1, 5), numbers_listed=3)
    LookupPackages.objects.create(organization=org, line_status=True)
    NumberLookup.objects.create(
        organization=org,
        phone=bob.phone_e164,
        looked_up_at=timezone.now(),
        paid_line_type=True,
        line_type=LineType.LANDLINE,
    )
    reply = make_message(
        ann, sender, direction=Message.Direction.INBOUND, body="I want to cancel my membership"
    )
    consent.review_open(org=org, contact=ann, message=reply, reply=replies.classify(reply.body))
    upload = ContactImport.objects.create(organization=org, created_by=owner, filename="a.csv")
    ContactImportRow.objects.create(
        contact_import=upload, line=2, outcome="imported", phone_raw="212 555 0101", contact=ann
    )
    record = history.history_import_start(org=org, days=30, run_in_background=False)
    HistorySeen.objects.create(organization=org, sid="SM" + "c" * 32, history_import=record)
    return {"ann": ann, "bob": bob}


def test_the_index_lists_every_model(admin_client, data):
    page = admin_client.get(reverse("admin:index")).content.decode()
    for model in MODELS:
        assert admin_url(model, "changelist") in page, model


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_model_has_a_list_and_a_page(admin_client, data, model):
    row = model.objects.first()
    assert row is not None
    assert admin_client.get(admin_url(model, "changelist")).status_code == 200
    assert admin_client.get(admin_url(model, "change", row.pk)).status_code == 200


def test_a_contact_is_found_by_the_last_four_digits_of_its_phone(admin_client, data):
    page = admin_client.get(admin_url(Contact, "changelist"), {"q": "0177"})
    assert list(page.context["cl"].result_list) == [data["bob"]]


def test_a_contact_is_found_by_its_phone_typed_with_punctuation(admin_client, data):
    page = admin_client.get(admin_url(Contact, "changelist"), {"q": "(212) 555-0177"})
    assert list(page.context["cl"].result_list) == [data["bob"]]


def test_number_state_is_found_by_its_last_digits(admin_client, data):
    page = admin_client.get(admin_url(NumberState, "changelist"), {"q": "0177"})
    assert [state.phone for state in page.context["cl"].result_list] == ["+12125550177"]


def test_number_state_shows_why_a_number_is_not_texted(admin_client, data):
    page = admin_client.get(admin_url(NumberState, "changelist")).content.decode()
    assert "Manual (" in page
    assert "STOP keyword (" in page


def test_number_state_links_to_its_audit_trail(admin_client, data):
    state = NumberState.objects.get(phone="+12125550177")
    page = admin_client.get(admin_url(NumberState, "change", state.pk)).content.decode()
    link = re.search(r'href="([^"]*)">Every change to this number', page).group(1)
    trail = admin_client.get(html.unescape(link))
    assert [event.action for event in trail.context["cl"].result_list] == ["mark_invalid"]


def test_number_state_can_be_viewed_but_not_changed(admin_client, data):
    state = NumberState.objects.get(phone="+12125550177")
    change = admin_url(NumberState, "change", state.pk)
    page = admin_client.get(change)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(change, {"invalid_source": ""}).status_code == 403
    state.refresh_from_db()
    assert state.invalid_source == "manual"


def test_number_state_cannot_be_added_or_deleted(admin_client, data):
    state = NumberState.objects.get(phone="+12125550177")
    assert admin_client.get(admin_url(NumberState, "add")).status_code == 403
    assert admin_client.post(admin_url(NumberState, "delete", state.pk)).status_code == 403
    assert NumberState.objects.filter(pk=state.pk).exists()


@pytest.mark.parametrize("model", READ_ONLY, ids=lambda model: model.__name__)
def test_read_only_models_offer_no_add_change_or_bulk_action(admin_client, data, model):
    row = model.objects.first()
    assert admin_client.get(admin_url(model, "add")).status_code == 403
    assert admin_client.post(admin_url(model, "change", row.pk), {}).status_code == 403
    changelist = admin_client.get(admin_url(model, "changelist"))
    # No action that changes a row: not even "Delete selected". Stored events have one,
    # Retry, which only puts an event that did not apply back into the queue.
    actions = changelist.context["action_form"]
    if model is MessageEvent:
        assert [name for name, _ in actions.fields["action"].choices if name] == ["retry"]
    else:
        assert actions is None


def test_the_message_list_does_not_query_per_row(
    admin_client, data, org, django_assert_max_num_queries
):
    senders = [make_sender(org) for _ in range(3)]
    for n in range(60):
        contact = make_contact(org, f"+1212555{2000 + n}")
        make_message(contact, senders[n % 3], status=Message.Status.DELIVERED)
    with django_assert_max_num_queries(12):
        page = admin_client.get(admin_url(Message, "changelist"))
    assert len(page.context["cl"].result_list) == 63


@pytest.mark.parametrize(
    ("start", "end"), [("08:00", "00:00"), ("22:00", "06:00"), ("09:00", "09:00")]
)
def test_quiet_hours_that_never_open_or_run_past_midnight_are_refused(
    admin_client, data, start, end
):
    """A sending window must end later the same day: 00:00 would never open, 22:00 to 06:00
    would send at night."""
    org = Organization.objects.get(slug="riverside-test")
    form = {
        "name": org.name,
        "slug": org.slug,
        "default_region": "US",
        "time_zone": "America/New_York",
        "help_reply": org.help_reply,
        "quiet_hours_start": start,
        "quiet_hours_end": end,
        "circuit_breaker_errors": 20,
        "circuit_breaker_minutes": 10,
    }
    response = admin_client.post(f"/admin/contacts/organization/{org.pk}/change/", form)
    assert response.status_code == 200  # the form again, with the message
    assert "to send until midnight, use 23:59:59" in response.content.decode()
    org.refresh_from_db()
    assert (org.quiet_hours_start, org.quiet_hours_end) == (
        datetime.time(8, 0),
        datetime.time(21, 0),
    )
