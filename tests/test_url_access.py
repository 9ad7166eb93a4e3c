"""Every URL pattern, walked as an anonymous user, an outsider, staff and a manager (SPEC §8).

The table below must name every route: a new URL without a row fails
`test_every_route_is_in_the_table`, so access rules are decided, not forgotten.
"""

from types import SimpleNamespace

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from contacts.models import ContactImport, Membership
from conversations import history
from conversations.models import Broadcast, Message
from deliverability import consent, replies
from deliverability.models import OrgAlert
from tests.factories import (
    make_contact,
    make_member,
    make_message,
    make_org,
    make_org_and_manager,
    make_sender,
)
from tests.isolation import rows_for_the_module

ANON, OUTSIDER, STAFF, MANAGER = "anonymous", "outsider", "staff", "manager"

# name: (method, needs an object of the org, managers only, what a permitted user gets)
ROUTES = {
    "home": ("get", False, False, 200),
    "contacts:list": ("get", False, False, 200),
    "contacts:detail": ("get", True, False, 200),
    "contacts:change_phone": ("post", True, False, 302),
    "contacts:import": ("get", False, True, 200),
    "contacts:import_result": ("get", True, True, 200),
    "conversations:list": ("get", False, False, 200),
    "conversations:detail": ("get", True, False, 200),
    "conversations:thread": ("get", True, False, 200),
    "conversations:thread_updates": ("get", True, False, 200),
    "conversations:mark_read": ("post", True, False, 302),
    "conversations:send": ("post", True, False, 302),
    "conversations:simulate_reply": ("post", True, False, 404),
    "conversations:compose_hints": ("post", False, False, 200),
    "conversations:failed": ("get", False, False, 200),
    "conversations:failed_bulk": ("post", False, True, 302),
    "conversations:failed_export": ("get", False, True, 200),
    "conversations:failed_action": ("post", True, False, 302),
    "conversations:review": ("get", False, False, 200),
    "conversations:review_decide": ("post", True, False, 302),
    "conversations:review_undo": ("post", True, False, 302),
    "conversations:alert_resolve": ("post", True, True, 302),
    "broadcasts:list": ("get", False, True, 200),
    "broadcasts:preview": ("post", False, True, 200),
    "broadcasts:start": ("post", False, True, 400),
    "broadcasts:sample": ("post", False, True, 302),
    "broadcasts:sample_status": ("get", True, True, 200),
    "broadcasts:detail": ("get", True, True, 200),
    "broadcasts:cancel": ("post", True, True, 302),
    "deliverability:contact_action": ("post", True, False, 302),
    "deliverability:reports": ("get", False, True, 200),
    "deliverability:report": ("get", False, True, 200),
    "history:page": ("get", False, True, 200),
    "history:start": ("post", False, True, 302),
    "history:import": ("get", True, True, 200),
    "switch_organization": ("post", False, False, 404),
}
# Routes that are not pages of an organization: checked by their own tests.
OWN_RULES = {"login", "logout", "healthz", "favicon", "webhooks:status", "webhooks:inbound"}


def _route_names(patterns, namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from _route_names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield f"{namespace}:{pattern.name}" if namespace else pattern.name


def test_every_route_is_in_the_table():
    names = set(_route_names(get_resolver().url_patterns))
    assert names - set(ROUTES) - OWN_RULES == set()


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The organizations, their people and one object of each kind, made once for the module:
    every test only reads them (what a POST changes is rolled back after each test)."""
    with rows_for_the_module(django_db_blocker):
        org, owner = make_org_and_manager()
        teammate = make_member(org, Membership.Role.STAFF, username="teammate")
        other_org = make_org("Harbor Test Clinic", slug="harbor-test")
        outsider = make_member(other_org, Membership.Role.MANAGER, username="outsider")
        yield SimpleNamespace(
            org=org,
            owner=owner,
            teammate=teammate,
            outsider=outsider,
            objects=_objects(org),
        )


@pytest.fixture
def owner(db, world):
    return world.owner


@pytest.fixture
def teammate(db, world):
    return world.teammate


@pytest.fixture
def outsider(db, world):
    return world.outsider


@pytest.fixture
def objects(db, world):
    return world.objects


def _objects(org):
    """One object of each kind in `org`, for the URLs that name one."""
    sender = make_sender(org, throughput=100)
    contact = make_contact(org, "+12125550101")
    failed = make_message(contact, sender, status=Message.Status.UNDELIVERED, error_code=30003)
    inbound = make_message(
        contact,
        sender,
        status=Message.Status.RECEIVED,
        direction=Message.Direction.INBOUND,
        body="I want to cancel my membership",
    )
    item = consent.review_open(
        org=org, contact=contact, message=inbound, reply=replies.classify(inbound.body)
    )
    broadcast = Broadcast.objects.create(
        organization=org, sender=sender, body="Hi", state=Broadcast.State.SENDING
    )
    job = ContactImport.objects.create(organization=org, filename="m.csv", state="done")
    alert = OrgAlert.objects.create(organization=org, kind="sender_error", message="Check it")
    sample = Message.objects.create(
        organization=org, to_number="+12125550109", direction="outbound", is_test=True
    )
    imported = history.history_import_start(org=org, days=30, run_in_background=False)
    return {
        "history:import": {"import_id": imported.pk},
        "contacts:detail": {"contact_id": contact.pk},
        "contacts:change_phone": {"contact_id": contact.pk},
        "contacts:import_result": {"import_id": job.pk},
        "conversations:detail": {"conversation_id": contact.conversation.pk},
        "conversations:thread": {"conversation_id": contact.conversation.pk},
        "conversations:thread_updates": {"conversation_id": contact.conversation.pk},
        "conversations:mark_read": {"conversation_id": contact.conversation.pk},
        "conversations:send": {"conversation_id": contact.conversation.pk},
        "conversations:simulate_reply": {"conversation_id": contact.conversation.pk},
        "conversations:failed_action": {"message_id": failed.pk, "action": "retry"},
        "conversations:review_decide": {"item_id": item.pk},
        "conversations:review_undo": {"item_id": item.pk},
        "conversations:alert_resolve": {"alert_id": alert.pk},
        "broadcasts:detail": {"broadcast_id": broadcast.pk},
        "broadcasts:cancel": {"broadcast_id": broadcast.pk},
        "broadcasts:sample_status": {"message_id": sample.pk},
        "deliverability:contact_action": {"contact_id": contact.pk, "action": "mark-invalid"},
        "deliverability:report": {"name": "delivery"},
    }


def _request(client, name, objects):
    method, _, _, _ = ROUTES[name]
    url = reverse(name, kwargs=objects.get(name, {}))
    data = {"body": "Hello", "phone": "+12125550109"} if method == "post" else {}
    return getattr(client, method)(url, data)


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_anonymous_users_are_sent_to_log_in(client, objects, name):
    response = _request(client, name, objects)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", sorted(n for n, r in ROUTES.items() if r[1]))
def test_another_organizations_objects_are_not_found(outsider_client, objects, name):
    assert _request(outsider_client, name, objects).status_code == 404


@pytest.mark.parametrize("name", sorted(n for n, r in ROUTES.items() if r[2]))
def test_staff_may_not_use_manager_pages(teammate_client, objects, name):
    assert _request(teammate_client, name, objects).status_code == 403


@pytest.mark.parametrize("name", sorted(n for n, r in ROUTES.items() if not r[2]))
def test_staff_use_their_pages(teammate_client, objects, name):
    assert _request(teammate_client, name, objects).status_code == ROUTES[name][3]


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_managers_use_every_page(owner_client, objects, name):
    assert _request(owner_client, name, objects).status_code == ROUTES[name][3]


@pytest.mark.parametrize("name", sorted(n for n, r in ROUTES.items() if r[0] == "post"))
def test_state_changes_refuse_get(owner_client, objects, name):
    url = reverse(name, kwargs=objects.get(name, {}))
    assert owner_client.get(url).status_code == 405
