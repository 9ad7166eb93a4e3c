"""Rules the database keeps whatever the code does."""

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from contacts.models import Membership
from conversations.models import MessageEvent, Sender
from deliverability.models import NumberState
from tests.factories import make_sender


def _fails(create):
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def test_one_state_row_per_org_and_number(org, other_org):
    NumberState.objects.create(organization=org, phone="+12125550101")
    NumberState.objects.create(organization=other_org, phone="+12125550101")
    _fails(lambda: NumberState.objects.create(organization=org, phone="+12125550101"))


def test_one_event_per_idempotency_key(db):
    MessageEvent.objects.create(kind="status", idempotency_key="status:tok-1", payload={})
    _fails(lambda: MessageEvent.objects.create(kind="status", idempotency_key="status:tok-1"))


def test_one_membership_per_user_and_org(org, owner):
    _fails(lambda: Membership.objects.create(user=owner, organization=org, role="staff"))


def test_a_sender_has_a_number_or_a_messaging_service(org):
    _fails(lambda: Sender.objects.create(organization=org, phone_number="", throughput=1))
    Sender.objects.create(organization=org, messaging_service_sid="MG" + "0" * 32, throughput=1)


def test_a_sending_number_belongs_to_one_org(org, other_org):
    make_sender(org, phone_number="+16175550001")
    _fails(lambda: make_sender(other_org, phone_number="+16175550001"))


def test_a_sender_sends_at_a_positive_rate(org):
    _fails(lambda: make_sender(org, throughput=0))


def test_an_invalid_flag_or_opt_out_has_a_time(org):
    _fails(
        lambda: NumberState.objects.create(
            organization=org, phone="+12125550101", invalid_source="manual"
        )
    )
    _fails(
        lambda: NumberState.objects.create(
            organization=org, phone="+12125550102", opt_out_reason="staff"
        )
    )
    NumberState.objects.create(
        organization=org, phone="+12125550103", opt_out_reason="staff", opted_out_at=timezone.now()
    )
