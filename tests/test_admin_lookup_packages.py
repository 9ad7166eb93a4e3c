"""An organization's Lookup packages in the admin: edited by an administrator, every change in
that organization's audit trail and nowhere else."""

import pytest
from django.urls import reverse
from django.utils import timezone

from deliverability import lookup_packages
from deliverability.models import (
    AuditEvent,
    LookupPackages,
    NumberFacts,
    NumberLookup,
    NumberState,
)
from tests.factories import make_contact, sign_in

ADD = reverse("admin:deliverability_lookuppackages_add")


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    sign_in(client, user)
    client.user = user
    return client


def change_url(packages):
    return reverse("admin:deliverability_lookuppackages_change", args=[packages.pk])


def test_the_add_page_says_what_each_package_costs_and_that_line_status_is_beta(admin_client):
    page = admin_client.get(ADD).content.decode()
    assert "Line status (beta)" in page
    assert "US numbers only" in page
    assert "$0.008" in page and "$0.007" in page


def test_turning_a_package_on_is_audited_in_that_org_only(admin_client, org, other_org):
    response = admin_client.post(
        ADD, {"organization": org.pk, "line_type": "on", "line_status": "on"}
    )
    assert response.status_code == 302
    packages = LookupPackages.objects.get(organization=org)
    assert (packages.line_type, packages.line_status, packages.reassigned) == (True, True, False)
    event = AuditEvent.objects.get(action="lookup_packages")
    assert (event.organization, event.actor, event.source_page) == (org, admin_client.user, "admin")
    assert event.before == {"line_type": True, "line_status": False, "reassigned": False}
    assert event.after == {"line_type": True, "line_status": True, "reassigned": False}
    assert not AuditEvent.objects.filter(organization=other_org).exists()
    # The other organization keeps the defaults: its lookups ask the line type only.
    make_contact(other_org, "+12125550101")
    [request] = lookup_packages.plan(other_org, ["+12125550101"])
    assert request.fields == ["line_type_intelligence"]


def test_a_change_records_before_and_after(admin_client, org):
    packages = LookupPackages.objects.create(organization=org, line_status=True)
    response = admin_client.post(change_url(packages), {"line_type": "on", "reassigned": "on"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="lookup_packages")
    assert event.before == {"line_type": True, "line_status": True, "reassigned": False}
    assert event.after == {"line_type": True, "line_status": False, "reassigned": True}


def test_a_row_cannot_be_moved_to_another_org(admin_client, org, other_org):
    packages = LookupPackages.objects.create(organization=org, line_status=True)
    admin_client.post(change_url(packages), {"organization": other_org.pk, "line_type": "on"})
    packages.refresh_from_db()
    assert packages.organization == org
    assert not LookupPackages.objects.filter(organization=other_org).exists()


def test_one_org_has_one_row(admin_client, org):
    LookupPackages.objects.create(organization=org)
    response = admin_client.post(ADD, {"organization": org.pk, "line_status": "on"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_deleting_goes_back_to_the_defaults_and_is_audited(admin_client, org):
    packages = LookupPackages.objects.create(organization=org, reassigned=True)
    url = reverse("admin:deliverability_lookuppackages_delete", args=[packages.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    event = AuditEvent.objects.get(action="lookup_packages")
    assert event.after == {"line_type": True, "line_status": False, "reassigned": False}
    assert LookupPackages.for_org(org).reassigned is False


def test_staff_without_admin_rights_cannot_see_the_packages(client, owner, org):
    LookupPackages.objects.create(organization=org)
    client.force_login(owner)
    response = client.get(reverse("admin:deliverability_lookuppackages_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_turning_line_status_on_looks_up_the_orgs_numbers(
    admin_client, org, other_org, django_capture_on_commit_callbacks
):
    make_contact(org, "+12125550160")  # the simulator's disconnected range
    make_contact(other_org, "+12125550161")
    NumberFacts.objects.create(
        phone="+12125550160", line_type="mobile", looked_up_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            ADD, {"organization": org.pk, "line_type": "on", "line_status": "on"}, follow=True
        )
    assert "1 number of" in response.content.decode()
    flagged = NumberState.objects.get(organization=org, phone="+12125550160")
    assert flagged.invalid_reason == "Disconnected (carrier line status)"
    [lookup] = NumberLookup.objects.filter(organization=org)
    assert (lookup.paid_line_type, lookup.paid_line_status) == (False, True)  # type was fresh
    assert not NumberLookup.objects.filter(organization=other_org).exists()


def test_turning_a_package_off_looks_nothing_up(
    admin_client, org, django_capture_on_commit_callbacks
):
    make_contact(org, "+12125550160")
    packages = LookupPackages.objects.create(organization=org, line_status=True)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(change_url(packages), {"line_type": "on"})
    assert not NumberLookup.objects.exists()
