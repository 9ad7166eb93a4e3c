"""The Django admin: every model listed, phones found by their last digits, state read-only."""

import pytest
from django.apps import apps
from django.urls import reverse

from conversations.models import Message
from deliverability import services
from deliverability.models import NumberState
from tests.factories import make_contact, make_message, make_sender

APPS = ("contacts", "conversations", "deliverability")


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def data(org, owner):
    sender = make_sender(org)
    ann = make_contact(org, "+12125550101", first_name="Ann")
    bob = make_contact(org, "+12125550177", first_name="Bob")
    for n in range(30):
        make_message(ann, sender, status=Message.Status.DELIVERED, body=f"Note {n}")
    services.number_mark_invalid(org=org, phone=bob.phone_e164, by=owner)
    return {"ann": ann, "bob": bob}


@pytest.mark.parametrize(
    "model", [m for m in apps.get_models() if m._meta.app_label in APPS], ids=str
)
def test_every_model_has_a_changelist(admin_client, data, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert admin_client.get(url).status_code == 200


def test_a_phone_is_found_by_its_last_four_digits(admin_client, data):
    page = admin_client.get(reverse("admin:contacts_contact_changelist"), {"q": "0177"})
    content = page.content.decode()
    assert "+12125550177" in content
    assert "+12125550101" not in content


def test_number_state_is_read_only(admin_client, data):
    state = NumberState.objects.get(phone="+12125550177")
    change = reverse("admin:deliverability_numberstate_change", args=[state.pk])
    assert admin_client.get(change).status_code == 200  # viewable
    admin_client.post(change, {"invalid_source": ""})
    state.refresh_from_db()
    assert state.invalid_source == "manual"
    assert admin_client.get(reverse("admin:deliverability_numberstate_add")).status_code == 403


def test_the_message_list_does_not_query_per_row(admin_client, data, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        admin_client.get(reverse("admin:conversations_message_changelist"))
