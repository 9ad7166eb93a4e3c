"""Who sees what (SPEC §8): login, the current organization, its switcher, CSP and navigation."""

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.utils import timezone

from contacts.models import Membership
from deliverability.models import NumberFacts, NumberState
from deliverability.queries import list_health
from tests.factories import make_contact, make_user


class _Tags(HTMLParser):
    """The <script> tags, and the links of the main navigation, of a page."""

    def __init__(self):
        super().__init__()
        self.scripts = []
        self.nav_links = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "a" and {"nav-link", "navbar-brand"} & set(classes):
            self.nav_links.append(attrs["href"])


def _tags(response):
    parser = _Tags()
    parser.feed(response.content.decode())
    return parser


def _stat(response, label):
    """The figure shown on the overview's card `label`."""
    html = response.content.decode()
    match = re.search(rf">{re.escape(label)}</div><div class=\"display-6[^\"]*\">([^<]*)<", html)
    assert match, label
    return match.group(1)


def test_it_sends_anonymous_users_to_log_in(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_answers_healthz_without_login(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200


def test_it_shows_only_the_current_orgs_name_and_counts(owner_client, org, other_org, outsider):
    for n in range(3):
        make_contact(org, f"+1212555010{n}")
    for n in range(5):
        make_contact(other_org, f"+1212555020{n}")
    make_contact(other_org, "n/a")

    response = owner_client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert org.name in html
    assert other_org.name not in html
    assert _stat(response, "Contacts") == "3"
    assert _stat(response, "Sendable") == "3"
    assert _stat(response, "Unusable number as entered") == "0"

    other = Client()
    other.force_login(outsider)
    response = other.get("/")
    assert org.name not in response.content.decode()
    assert _stat(response, "Contacts") == "6"
    assert _stat(response, "Unusable number as entered") == "1"


def _current_org(client):
    return client.get("/").context["current_organization"]


def test_it_switches_between_the_orgs_of_the_user(owner_client, owner, org, other_org):
    Membership.objects.create(user=owner, organization=other_org, role=Membership.Role.STAFF)
    make_contact(org, "+12125550101")
    make_contact(other_org, "+12125550201")
    make_contact(other_org, "+12125550202")

    for target, contacts, manager in [(org, "1", True), (other_org, "2", False), (org, "1", True)]:
        response = owner_client.post("/organization/switch/", {"organization": target.slug})

        assert response.status_code == 302
        assert response["Location"] == "/"
        response = owner_client.get("/")
        assert response.context["current_organization"] == target
        assert _stat(response, "Contacts") == contacts
        # The role is the one held in that org: manager-only pages only where a manager.
        assert ("/broadcasts/" in _tags(response).nav_links) == manager


def test_it_refuses_to_switch_by_get(owner_client, owner, org, other_org):
    Membership.objects.create(user=owner, organization=other_org, role=Membership.Role.STAFF)
    before = _current_org(owner_client)
    after = other_org if before == org else org

    response = owner_client.get("/organization/switch/", {"organization": after.slug})

    assert response.status_code == 405
    assert _current_org(owner_client) == before


def test_it_does_not_switch_to_an_org_the_user_does_not_belong_to(owner_client, org, other_org):
    response = owner_client.post("/organization/switch/", {"organization": other_org.slug})
    assert response.status_code == 404
    assert _current_org(owner_client) == org


def test_it_forgets_a_chosen_org_the_user_has_left(owner_client, owner, org, other_org):
    membership = Membership.objects.create(user=owner, organization=other_org)
    owner_client.post("/organization/switch/", {"organization": other_org.slug}, follow=True)
    membership.delete()

    response = owner_client.get("/")

    assert response.context["current_organization"] == org
    assert other_org.name not in response.content.decode()


def test_it_forbids_a_user_without_membership(client, db):
    client.force_login(make_user())
    assert client.get("/").status_code == 403
    assert client.get("/contacts/").status_code == 403


@pytest.mark.parametrize("who", ["anonymous", "owner", "teammate", "no_membership"])
@pytest.mark.parametrize("url", ["/", "/contacts/", "/accounts/login/", "/healthz", "/nowhere/"])
def test_it_sends_a_csp_without_inline_script_on_every_response(request, org, who, url):
    client = Client()
    if who == "no_membership":
        client.force_login(make_user())
    elif who != "anonymous":
        client.force_login(request.getfixturevalue(who))

    response = client.get(url)

    policy = response["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["script-src"] == ["'self'"]
    assert "unsafe-inline" not in policy
    if response["Content-Type"].startswith("text/html"):
        assert all(script.get("src") for script in _tags(response).scripts), url


@pytest.mark.parametrize("who", ["owner", "teammate"])
def test_it_shows_only_navigation_links_whose_pages_open(request, org, who):
    client = Client()
    client.force_login(request.getfixturevalue(who))

    links = _tags(client.get("/")).nav_links

    assert "/" in links and "/contacts/" in links
    for link in links:
        assert client.get(link).status_code == 200, link


def test_it_counts_list_health_by_state(org, other_org):
    now = timezone.now()
    phones = {
        "manual": "+12125550101",
        "automatic": "+12125550102",
        "opted_out": "+12125550103",
        "paused": "+12125550104",
        "pause_over": "+12125550105",
        "landline": "+12125550106",
        "plain": "+12125550107",
    }
    for phone in phones.values():
        make_contact(org, phone)
    make_contact(org, "n/a")
    state = NumberState.objects.create
    state(organization=org, phone=phones["manual"], invalid_source="manual", invalid_at=now)
    state(
        organization=org,
        phone=phones["automatic"],
        invalid_source="automatic",
        invalid_code="21614",
        invalid_reason="Landline; not SMS-capable",
        invalid_at=now,
    )
    state(
        organization=org,
        phone=phones["opted_out"],
        opt_out_reason="stop_keyword",
        opted_out_at=now,
    )
    state(organization=org, phone=phones["paused"], paused_until=now + timedelta(days=3))
    state(organization=org, phone=phones["pause_over"], paused_until=now - timedelta(days=1))
    NumberFacts.objects.create(phone=phones["landline"], line_type="landline")
    # Another organization's state of the same number changes nothing here.
    state(organization=other_org, phone=phones["plain"], opt_out_reason="staff", opted_out_at=now)
    make_contact(other_org, phones["plain"])

    health = list_health(org, now=now)

    assert health == {
        "total": 8,
        "subscribed": 7,  # Paused contacts are still subscribers.
        "sendable": 2,  # The plain number and the one whose pause is over.
        "opted_out": 1,
        "invalid": 2,
        "invalid_manual": 1,
        "invalid_automatic": 1,
        "invalid_number": 1,
        "landline": 1,
        "paused": 1,
    }
