"""Rules the database keeps whatever the code does."""

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from contacts.models import Membership
from conversations.models import MessageEvent, Sender
from deliverability.models import NumberState
from tests.factories import make_sender

PHONE = "+12125550101"


def _refused(create):
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def test_it_keeps_one_number_state_per_org_and_number(org, other_org):
    NumberState.objects.create(organization=org, phone=PHONE)
    _refused(lambda: NumberState.objects.create(organization=org, phone=PHONE))


def test_it_lets_two_orgs_hold_state_for_the_same_number(org, other_org):
    NumberState.objects.create(organization=org, phone=PHONE)
    NumberState.objects.create(organization=other_org, phone=PHONE)
    assert NumberState.objects.filter(phone=PHONE).count() == 2


def test_it_records_an_event_once_per_idempotency_key(db):
    MessageEvent.objects.create(kind="status", idempotency_key="status:tok-1", payload={})
    _refused(
        lambda: MessageEvent.objects.create(
            kind="status", idempotency_key="status:tok-1", payload={}
        )
    )
    MessageEvent.objects.create(kind="status", idempotency_key="status:tok-2", payload={})


def test_it_keeps_one_membership_per_user_and_org(org, other_org, owner):
    _refused(lambda: Membership.objects.create(user=owner, organization=org, role="staff"))
    Membership.objects.create(user=owner, organization=other_org, role="staff")


def test_it_requires_a_sender_to_have_a_number_or_a_messaging_service(org):
    _refused(lambda: Sender.objects.create(organization=org, throughput=1))
    Sender.objects.create(organization=org, messaging_service_sid="MG" + "0" * 32, throughput=1)
    Sender.objects.create(organization=org, phone_number="+16175550002", throughput=1)


def test_it_gives_a_sending_number_to_one_org_only(org, other_org):
    make_sender(org, phone_number="+16175550001")
    _refused(lambda: make_sender(other_org, phone_number="+16175550001"))
    _refused(lambda: make_sender(org, phone_number="+16175550001"))


def test_it_lets_many_senders_be_messaging_services(org, other_org):
    make_sender(org, phone_number="", messaging_service_sid="MG" + "1" * 32)
    make_sender(other_org, phone_number="", messaging_service_sid="MG" + "2" * 32)
    assert Sender.objects.filter(phone_number="").count() == 2


def test_it_requires_a_positive_throughput(org):
    _refused(lambda: make_sender(org, throughput=0))


def test_it_requires_an_invalid_flag_to_have_a_time(org):
    _refused(
        lambda: NumberState.objects.create(organization=org, phone=PHONE, invalid_source="manual")
    )
    NumberState.objects.create(
        organization=org, phone=PHONE, invalid_source="manual", invalid_at=timezone.now()
    )


def test_it_requires_an_opt_out_to_have_a_time(org):
    _refused(
        lambda: NumberState.objects.create(organization=org, phone=PHONE, opt_out_reason="staff")
    )
    NumberState.objects.create(
        organization=org, phone=PHONE, opt_out_reason="staff", opted_out_at=timezone.now()
    )


def test_it_checks_the_flags_on_update_too(org):
    state = NumberState.objects.create(organization=org, phone=PHONE)
    _refused(
        lambda: NumberState.objects.filter(pk=state.pk).update(
            invalid_source="automatic", invalid_code="21614"
        )
    )
    _refused(lambda: NumberState.objects.filter(pk=state.pk).update(opt_out_reason="carrier_stop"))
