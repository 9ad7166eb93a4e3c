"""Phone numbers as staff read them (SPEC §7, issue of one format): the organization's national
format on every page, E.164 on hover and in exports; search takes the number in any format."""

import pytest
from django.template import Context, Template

from contacts.models import Membership
from deliverability.models import NumberState
from tests.factories import make_contact, make_member, make_message, make_org, make_sender


def render(text, org=None, **context):
    template = Template("{% load reachable %}" + text)
    return template.render(Context({"current_organization": org, **context}))


@pytest.mark.parametrize(
    "region, value, shown",
    [
        ("US", "+12125550118", '<span title="+12125550118">(212) 555-0118</span>'),
        # Another country's number reads in its international form.
        ("US", "+442079460018", '<span title="+442079460018">+44 20 7946 0018</span>'),
        ("GB", "+442079460018", '<span title="+442079460018">020 7946 0018</span>'),
        # Text that is not a number (a contact's number as entered) is shown as it is, escaped.
        ("US", "n/a <b>", "n/a &lt;b&gt;"),
        ("US", "", ""),
    ],
)
def test_the_phone_tag_reads_in_the_organizations_format(db, region, value, shown):
    org = make_org(default_region=region)
    assert render("{% phone number %}", org, number=value) == shown


def test_the_phone_tag_takes_a_contact_and_its_number_as_entered(db):
    org = make_org()
    good = make_contact(org, "212-555-0118")
    bad = make_contact(org, "call me")
    assert render("{% phone c %}", org, c=good) == (
        '<span title="+12125550118">(212) 555-0118</span>'
    )
    assert render("{% phone c %}", org, c=bad) == "call me"


def test_the_plain_form_is_for_attributes(db):
    org = make_org()
    assert render("{% phone_text n as s %}[{{ s }}]", org, n="+12125550118") == ("[(212) 555-0118]")


@pytest.fixture
def flagged(org, owner):
    sender = make_sender(org, throughput=100)
    ann = make_contact(org, "+12125550118", first_name="Ann", last_name="Lee")
    make_message(ann, sender, status="failed", error_code=30003)
    NumberState.objects.of(org=org, phone=ann.phone_e164).mark_invalid(
        by=owner, note="Wrong number"
    )
    return ann


NATIONAL = '<span title="+12125550118">(212) 555-0118</span>'


@pytest.mark.parametrize(
    "url",
    [
        "/conversations/failed/",
        "/conversations/?filter=all",
        "/contacts/",
        "/reports/staff/",
    ],
)
def test_pages_show_the_national_format_with_e164_on_hover(owner_client, flagged, url):
    page = owner_client.get(url).content.decode()
    assert NATIONAL in page


def test_the_contact_card_and_its_history_show_the_national_format(owner_client, flagged):
    page = owner_client.get(f"/contacts/{flagged.pk}/").content.decode()
    assert page.count(NATIONAL) >= 2  # the card and the audit history
    conversation = owner_client.get(f"/conversations/{flagged.conversation.pk}/").content
    assert NATIONAL in conversation.decode()


def test_exports_keep_e164(owner_client, flagged):
    export = b"".join(owner_client.get("/conversations/failed/export.csv").streaming_content)
    assert "+12125550118" in export.decode()
    assert "(212)" not in export.decode()


@pytest.mark.parametrize(
    "query", ["(212) 555-0118", "+12125550118", "2125550118", "+1 212-555-0118", "555.0118"]
)
def test_search_takes_the_number_in_any_format(teammate_client, flagged, query):
    for url in ("/conversations/", "/contacts/"):
        page = teammate_client.get(url, {"filter": "all", "q": query}).content.decode()
        assert "Ann Lee" in page, (url, query)


def test_search_reads_a_national_number_with_its_trunk_prefix(client, db):
    org = make_org(default_region="GB")
    user = make_member(org, Membership.Role.MANAGER)
    client.force_login(user)
    make_contact(org, "+442079460018", first_name="Ada", last_name="Ng")
    make_contact(org, "+442079460019", first_name="Bea", last_name="Ng")
    page = client.get("/contacts/", {"filter": "all", "q": "020 7946 0018"}).content.decode()
    assert "Ada Ng" in page and "Bea Ng" not in page


def test_the_conversation_list_marks_text_that_is_not_a_number(teammate_client, org):
    eve = make_contact(org, "555-0122", first_name="Eve", last_name="Stone")
    make_message(
        eve, make_sender(org, throughput=100), status="skipped", skip_reason="invalid_number"
    )
    page = teammate_client.get("/conversations/", {"filter": "all"}).content.decode()
    assert "555-0122</span>" in page
    assert "Not a phone number</span>" in page
