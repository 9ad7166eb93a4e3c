"""The Failed & Disabled Messages log (SPEC §7, seed 000): what it lists and in which order, the
Failed Reason column (empty for a manual flag), badges, filters, sorting, row actions by htmx,
bulk actions and the CSV export (managers), and a query count that does not grow with rows."""

import csv
import io
import json
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.utils import timezone

from contacts.models import Contact, Membership
from conversations.backends import get_backend
from conversations.models import Broadcast, Message, Sender
from deliverability import outcomes, services
from deliverability.models import AuditEvent, NumberState
from tests.factories import (
    make_contact,
    make_member,
    make_message,
    make_org,
    make_org_and_manager,
    make_sender,
)
from tests.isolation import fresh, rows_for_the_module

HTMX = {"HX-Request": "true"}
URL = "/conversations/failed/"


def logged(contact, sender, minutes_ago, **fields):
    """A message created `minutes_ago` minutes ago."""
    message = make_message(contact, sender, **fields)
    created = timezone.now() - timedelta(minutes=minutes_ago)
    Message.objects.filter(pk=message.pk).update(created_at=created)
    message.created_at = created
    return message


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The organizations, their people and the log's messages, made once for the module; each
    test reads fresh copies, and what it changes is rolled back after it."""
    with rows_for_the_module(django_db_blocker):
        org, owner = make_org_and_manager()
        people = {
            "org": org,
            "owner": owner,
            "teammate": make_member(org, Membership.Role.STAFF, username="teammate"),
            "other_org": make_org("Harbor Test Clinic", slug="harbor-test"),
        }
        people["outsider"] = make_member(
            people["other_org"], Membership.Role.MANAGER, username="outsider"
        )
        yield SimpleNamespace(people=people, log=_log(org, owner))


@pytest.fixture
def org(db, world):
    return fresh(world.people["org"])


@pytest.fixture
def other_org(db, world):
    return fresh(world.people["other_org"])


@pytest.fixture
def owner(db, world):
    return fresh(world.people["owner"])


@pytest.fixture
def teammate(db, world):
    return fresh(world.people["teammate"])


@pytest.fixture
def outsider(db, world):
    return fresh(world.people["outsider"])


@pytest.fixture
def log(db, world):
    """The module's log, read again for this test: what an earlier test did to these objects in
    memory does not carry over."""
    made = world.log
    messages = Message.objects.in_bulk(
        [m.pk for group in ("messages", "hidden") for m in made[group].values()]
    )
    senders = Sender.objects.in_bulk([made["main"].pk, made["second"].pk])
    contacts = Contact.objects.in_bulk([c.pk for c in made["contacts"].values()])
    return {
        "messages": {key: messages[m.pk] for key, m in made["messages"].items()},
        "hidden": {key: messages[m.pk] for key, m in made["hidden"].items()},
        "main": senders[made["main"].pk],
        "second": senders[made["second"].pk],
        "contacts": {key: contacts[c.pk] for key, c in made["contacts"].items()},
    }


def _log(org, owner):
    """One message of each kind the log shows (and a few it must not show)."""
    main = make_sender(org, throughput=100)
    second = make_sender(org, throughput=100, label="Second line")
    ann = make_contact(org, "+12125550101", first_name="Ann", last_name="Lee")
    bob = make_contact(org, "+12125550102", first_name="Bob", last_name="Ray")
    cat = make_contact(org, "+12125550103", first_name="Cat", last_name="Ng")
    dan = make_contact(org, "+12125550104", first_name="Dan", last_name="Ortiz")
    eve = make_contact(org, "+12125550105", first_name="Eve", last_name="Moss")
    fay = make_contact(org, "+12125550106", first_name="Fay", last_name="Wu")
    gus = make_contact(org, "+12125550107", first_name="Gus", last_name="Hill")
    hal = make_contact(org, "n/a", first_name="Hal", last_name="Berg")
    NumberState.objects.of(org=org, phone=cat.phone_e164).mark_invalid(by=owner)
    NumberState.objects.of(org=org, phone=dan.phone_e164).flag_automatically(
        code=21614, reason="Landline; not SMS-capable", cause="Twilio 21614"
    )
    NumberState.objects.of(org=org, phone=eve.phone_e164).opt_out(reason="staff", by=owner)
    NumberState.objects.of(org=org, phone=fay.phone_e164).pause(
        until=timezone.now() + timedelta(days=5), by=owner
    )
    messages = {
        "unreachable": logged(ann, main, 1, status="failed", error_code=30003),
        "landline": logged(bob, main, 2, status="undelivered", error_code=30006),
        "manual": logged(cat, main, 3, status="skipped", skip_reason="marked_invalid"),
        "automatic": logged(dan, main, 4, status="skipped", skip_reason="marked_invalid"),
        "opted_out": logged(eve, main, 5, status="skipped", skip_reason="opted_out"),
        "paused": logged(fay, main, 6, status="skipped", skip_reason="paused"),
        "bad_input": logged(
            hal, main, 7, status="skipped", skip_reason="invalid_number", to_number="n/a"
        ),
        "spam": logged(ann, second, 8, status="undelivered", error_code=30007),
        "sender": logged(gus, second, 9, status="failed", error_code=21212),
        "unknown": logged(gus, main, 10, status="failed", error_code=39999),
        "old": logged(gus, main, 10 * 24 * 60, status="undelivered", error_code=30008),
    }
    hidden = {
        "delivered": logged(gus, main, 0, status="delivered"),
        "sent": logged(gus, main, 0, status="sent", provider_sid="SM" + "3" * 32),
        "pending": logged(gus, main, 0, status="pending"),
        "inbound": logged(gus, main, 0, status="received", direction="inbound"),
    }
    return {
        "messages": messages,
        "hidden": hidden,
        "main": main,
        "second": second,
        "contacts": {c.first_name.lower(): c for c in (ann, bob, cat, dan, eve, fay, gus, hal)},
    }


def rows(response):
    """{message pk: row html} in the order of the page."""
    page = response.content.decode()
    found = re.findall(r'<tr [^>]*\bid="msg-(\d+)"[^>]*>(.*?)</tr>', page, re.S)
    return {int(pk): html for pk, html in found}


def cells(row_html):
    """Select, contact, phone, status, failed reason, error code, date, actions."""
    return re.findall(r"<td[^>]*>(.*?)</td>", row_html, re.S)


def names(log, response):
    by_pk = {m.pk: key for key, m in log["messages"].items()}
    by_pk |= {m.pk: key for key, m in log["hidden"].items()}
    return [by_pk[pk] for pk in rows(response)]


def toast(response):
    return json.loads(response["HX-Trigger"])["toast"]


# What it lists -----------------------------------------------------------------------------------


def test_it_lists_failed_undelivered_and_skipped_messages_only(teammate_client, log):
    response = teammate_client.get(URL)
    assert response.status_code == 200
    assert set(names(log, response)) == set(log["messages"])


def test_it_lists_the_newest_first(teammate_client, log):
    response = teammate_client.get(URL)
    order = ["unreachable", "landline", "manual", "automatic", "opted_out", "paused"]
    order += ["bad_input", "spam", "sender", "unknown", "old"]
    assert names(log, response) == order


def test_it_never_lists_another_organizations_messages(teammate_client, other_org, log):
    stranger = make_contact(other_org, "+12125550199")
    theirs = make_message(stranger, make_sender(other_org), status="failed", error_code=30003)
    assert theirs.pk not in rows(teammate_client.get(URL))


def test_it_has_the_columns_of_the_article_with_actions_at_the_far_right(teammate_client, log):
    page = teammate_client.get(URL).content.decode()
    headers = re.findall(
        r"<th[^>]*>(.*?)</th>", page.split("<thead", 1)[1].split("</thead>")[0], re.S
    )
    text = [re.sub(r"<[^>]+>", "", h).strip() for h in headers]
    assert text[1:] == [
        "Contact",
        "Phone number",
        "Status",
        "Failed Reason",
        "Error code",
        "Date",
        "Actions",
    ]


@pytest.mark.parametrize(
    "key, status, reason, code",
    [
        ("unreachable", "Failed", "Unreachable", "30003"),
        ("landline", "Undelivered", "Landline or unreachable carrier", "30006"),
        ("spam", "Undelivered", "Spam detected (carrier filtering)", "30007"),
        ("sender", "Failed", "Invalid sending number", "21212"),
        ("unknown", "Failed", "Unknown error (code 39999)", "39999"),
        ("manual", "Skipped", "—", "—"),  # marked by staff: no failed reason
        ("automatic", "Skipped", "Landline; not SMS-capable", "—"),  # the flag's reason
        ("opted_out", "Skipped", "Opted out", "—"),
        ("paused", "Skipped", "Paused", "—"),
        ("bad_input", "Skipped", "Not a phone number", "—"),
    ],
)
def test_each_row_shows_its_status_failed_reason_and_code(
    teammate_client, log, key, status, reason, code
):
    row = rows(teammate_client.get(URL))[log["messages"][key].pk]
    _select, _contact, _phone, shown_status, shown_reason, shown_code, _date, _actions = cells(row)
    assert re.sub(r"<[^>]+>", "", shown_status) == status
    assert shown_reason == reason
    assert shown_code == code


def test_a_manual_flag_turned_automatic_then_shows_the_reason(teammate_client, org, log):
    outcomes.error_apply(org=org, phone=log["contacts"]["cat"].phone_e164, code=30005)
    row = rows(teammate_client.get(URL))[log["messages"]["manual"].pk]
    assert cells(row)[4] == "Carrier response that the number does not exist"


@pytest.mark.parametrize(
    "key, badges",
    [
        ("manual", ["Invalid"]),
        ("automatic", ["Invalid"]),
        ("opted_out", ["Opted out"]),
        ("paused", ["Paused"]),
        ("unreachable", []),
    ],
)
def test_the_phone_number_carries_the_numbers_badges(teammate_client, log, key, badges):
    phone_cell = cells(rows(teammate_client.get(URL))[log["messages"][key].pk])[2]
    assert re.findall(r'<span class="badge [^"]*">([^<]*)</span>', phone_cell) == badges
    assert log["messages"][key].to_number in phone_cell


def test_an_ended_pause_shows_no_badge(teammate_client, org, log):
    NumberState.objects.filter(phone=log["contacts"]["fay"].phone_e164).update(
        paused_until=timezone.now() - timedelta(minutes=1)
    )
    phone_cell = cells(rows(teammate_client.get(URL))[log["messages"]["paused"].pk])[2]
    assert "Paused" not in phone_cell


def test_the_contact_links_to_the_conversation(teammate_client, log):
    message = log["messages"]["unreachable"]
    contact_cell = cells(rows(teammate_client.get(URL))[message.pk])[1]
    assert f'href="/conversations/{message.conversation_id}/"' in contact_cell
    assert "Ann Lee" in contact_cell


# Filters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"reason": "skip:marked_invalid"}, {"manual", "automatic"}),
        ({"reason": "skip:opted_out"}, {"opted_out"}),
        ({"reason": "skip:invalid_number"}, {"bad_input"}),
        ({"reason": "code:30003"}, {"unreachable"}),
        ({"reason": "code:30007"}, {"spam"}),
        ({"category": "unreachable"}, {"unreachable", "landline", "unknown", "old"}),
        ({"category": "content"}, {"spam"}),
        ({"category": "sender"}, {"sender"}),
        ({"category": "invalid"}, set()),
        ({"status": "skipped"}, {"manual", "automatic", "opted_out", "paused", "bad_input"}),
        ({"status": "undelivered"}, {"landline", "spam", "old"}),
        ({"status": "failed"}, {"unreachable", "sender", "unknown"}),
        ({"status": "failed", "category": "unreachable"}, {"unreachable", "unknown"}),
    ],
)
def test_it_filters_by_reason_category_and_status(teammate_client, log, query, expected):
    assert set(names(log, teammate_client.get(URL, query))) == expected


def test_it_filters_by_date_range(teammate_client, org, log):
    today = timezone.localtime(timezone.now(), org.tzinfo).date()
    recent = names(log, teammate_client.get(URL, {"date_from": today - timedelta(days=2)}))
    assert "old" not in recent and "unreachable" in recent
    older = names(log, teammate_client.get(URL, {"date_to": today - timedelta(days=5)}))
    assert older == ["old"]
    around = {
        "date_from": today - timedelta(days=11),
        "date_to": today - timedelta(days=9),
    }
    assert names(log, teammate_client.get(URL, around)) == ["old"]


def test_it_filters_by_sender(teammate_client, log):
    response = teammate_client.get(URL, {"sender": log["second"].pk})
    assert set(names(log, response)) == {"spam", "sender"}


def test_the_sender_filter_offers_only_the_organizations_senders(teammate_client, other_org, log):
    theirs = make_sender(other_org, label="Their line")
    page = teammate_client.get(URL).content.decode()
    assert "Second line" in page and "Their line" not in page
    response = teammate_client.get(URL, {"sender": theirs.pk})
    assert set(names(log, response)) == set(log["messages"])  # an unknown choice filters nothing


def test_it_filters_by_broadcast(teammate_client, org, log):
    broadcast = Broadcast.objects.create(organization=org, sender=log["main"], body="Hi")
    Message.objects.filter(pk=log["messages"]["paused"].pk).update(broadcast=broadcast)
    response = teammate_client.get(URL, {"broadcast": broadcast.pk, "status": "skipped"})
    assert names(log, response) == ["paused"]


def test_filtering_with_htmx_returns_the_table_block_alone(teammate_client, log):
    response = teammate_client.get(URL, {"status": "skipped"}, headers=HTMX)
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="failed-block">')
    assert "<html" not in page
    assert set(names(log, response)) == {"manual", "automatic", "opted_out", "paused", "bad_input"}


def test_it_says_when_nothing_matches(teammate_client, log):
    page = teammate_client.get(URL, {"reason": "skip:recent_errors"}).content.decode()
    assert "No failed or skipped messages match these filters." in page


# Sorting -----------------------------------------------------------------------------------------


def test_it_sorts_by_date_both_ways(teammate_client, log):
    newest_first = names(log, teammate_client.get(URL, {"sort": "-created_at"}))
    oldest_first = names(log, teammate_client.get(URL, {"sort": "created_at"}))
    assert oldest_first == list(reversed(newest_first))
    assert oldest_first[0] == "old"


def test_it_sorts_by_error_code_both_ways(teammate_client, log):
    def codes(response):
        found = [cells(row)[5] for row in rows(response).values()]
        return [int(code) for code in found if code.isdigit()]

    ascending = codes(teammate_client.get(URL, {"sort": "error_code"}))
    descending = codes(teammate_client.get(URL, {"sort": "-error_code"}))
    assert ascending == sorted(ascending) and len(ascending) == 6
    assert descending == sorted(ascending, reverse=True)


# Row actions -----------------------------------------------------------------------------------


def row_action(client, message, action, htmx=True, **data):
    """A row action as the browser posts it; an opt-out as confirmed (with htmx the form's
    hx-vals, without it the confirmation page, adds `confirmed`)."""
    data.setdefault("next", f"{URL}?status=failed")
    data.setdefault("confirmed", "yes")
    headers = HTMX | {"HX-Target": f"msg-{message.pk}"} if htmx else {}
    return client.post(f"{URL}{message.pk}/{action}/", data, headers=headers)


def offered(response, message):
    actions_cell = cells(rows(response)[message.pk])[7]
    return re.findall(r"<button [^>]*formaction=[^>]*>([^<]*)</button>", actions_cell)


def test_a_row_action_with_htmx_returns_the_row_alone_and_a_toast(
    teammate_client, org, teammate, log
):
    message = log["messages"]["unreachable"]
    response = row_action(teammate_client, message, "mark-invalid")
    assert response.status_code == 200
    page = response.content.decode().strip()
    assert re.match(rf'<tr [^>]*id="msg-{message.pk}"', page) and page.endswith("</tr>")
    assert page.count("<tr") == 1
    assert '<span class="badge text-bg-danger">Invalid</span>' in page
    assert toast(response) == {
        "message": "Success: the phone number is marked as invalid.",
        "level": "success",
    }
    assert NumberState.objects.get(organization=org, phone=message.to_number).is_invalid
    event = AuditEvent.objects.latest("id")
    assert (event.action, event.actor, event.source_page) == ("mark_invalid", teammate, "failed")
    # The number's other rows listen for this event and come again (see the browser tests).
    changed = json.loads(response["HX-Trigger"])["numberStateChanged"]
    assert changed == {"phone": message.to_number}
    listing = teammate_client.get(URL).content.decode()
    assert 'hx-trigger="numberStateChanged from:body" hx-target="#failed-block"' in listing


def test_the_row_offers_what_the_numbers_state_allows(teammate_client, log):
    response = teammate_client.get(URL)
    messages = log["messages"]
    assert offered(response, messages["unreachable"]) == [
        "Mark Phone as Invalid",
        "Opt out",
        "Pause messaging",
        "Retry",
    ]
    # Retry only where it can go out: the send path's checks would skip the others again.
    assert offered(response, messages["manual"]) == [
        "Mark Phone as Valid",
        "Opt out",
        "Pause messaging",
    ]
    assert offered(response, messages["automatic"]) == ["Opt out", "Pause messaging"]
    assert offered(response, messages["opted_out"]) == ["Mark Phone as Invalid"]
    assert offered(response, messages["paused"]) == ["Mark Phone as Invalid", "Opt out"]
    assert offered(response, messages["bad_input"]) == []  # no number to act on
    row = cells(rows(response)[messages["opted_out"].pk])[7]
    assert "No retry: it would be skipped (opted out)" in row


def test_a_retry_that_would_be_skipped_is_refused_and_sends_nothing(teammate_client, log):
    message = log["messages"]["opted_out"]
    before = Message.objects.count()
    response = row_action(teammate_client, message, "retry")
    assert toast(response) == {
        "message": "Not retried: the number would be skipped (opted out).",
        "level": "warning",
    }
    assert Message.objects.count() == before


def test_each_row_menu_is_named_more_actions(teammate_client, log):
    response = teammate_client.get(URL)
    for row in rows(response).values():
        assert 'aria-label="More actions"' in cells(row)[7]


def test_mark_valid_from_a_row_clears_a_manual_flag(teammate_client, org, log):
    message = log["messages"]["manual"]
    response = row_action(teammate_client, message, "mark-valid")
    assert ">Invalid</span>" not in response.content.decode()
    assert toast(response)["level"] == "success"
    assert not NumberState.objects.get(organization=org, phone=message.to_number).is_invalid


def test_mark_valid_on_an_automatic_flag_is_refused_and_nothing_changes(teammate_client, org, log):
    message = log["messages"]["automatic"]
    audits = AuditEvent.objects.count()
    response = row_action(teammate_client, message, "mark-valid")
    assert toast(response)["level"] == "danger"
    assert "flagged automatically" in toast(response)["message"]
    assert '<span class="badge text-bg-danger">Invalid</span>' in response.content.decode()
    state = NumberState.objects.get(organization=org, phone=message.to_number)
    assert state.invalid_source == "automatic"
    assert AuditEvent.objects.count() == audits


def test_opt_out_from_a_row(teammate_client, org, log):
    message = log["messages"]["landline"]
    response = row_action(teammate_client, message, "opt-out")
    assert '<span class="badge text-bg-secondary">Opted out</span>' in response.content.decode()
    state = NumberState.objects.get(organization=org, phone=message.to_number)
    assert state.opt_out_reason == "staff"


def test_a_row_action_acts_on_the_number_the_message_went_to(teammate_client, org, owner, log):
    message = log["messages"]["unreachable"]
    services.contact_change_phone(contact=log["contacts"]["ann"], raw="+12125550111", by=owner)
    row_action(teammate_client, message, "mark-invalid")
    assert NumberState.objects.get(organization=org, phone="+12125550101").is_invalid
    assert not NumberState.objects.filter(phone="+12125550111").exists()


def test_retry_from_a_row_creates_a_new_message(teammate_client, teammate, log):
    message = log["messages"]["unreachable"]
    response = row_action(teammate_client, message, "retry")
    assert toast(response) == {
        "message": "Success: 1 message queued again (the pre-send checks still apply).",
        "level": "success",
    }
    retried = Message.objects.filter(conversation=message.conversation).latest("id")
    assert retried.pk != message.pk
    assert (retried.body, retried.sender, retried.sent_by) == (
        message.body,
        message.sender,
        teammate,
    )
    assert f'id="msg-{message.pk}"' in response.content.decode()


def test_without_javascript_a_row_action_redirects_back_with_a_message(teammate_client, log):
    response = row_action(teammate_client, log["messages"]["landline"], "opt-out", htmx=False)
    assert response.status_code == 302
    assert response["Location"] == f"{URL}?status=failed"
    [message] = get_messages(response.wsgi_request)
    assert str(message) == "Success: the contact is opted out."


def test_a_row_action_on_a_message_the_log_does_not_show_is_not_found(teammate_client, log):
    response = row_action(teammate_client, log["hidden"]["delivered"], "mark-invalid")
    assert response.status_code == 404


def test_an_unknown_row_action_is_not_found(teammate_client, log):
    assert row_action(teammate_client, log["messages"]["spam"], "lift-opt-out").status_code == 404


def test_another_organizations_row_is_not_found(outsider_client, log):
    response = row_action(outsider_client, log["messages"]["unreachable"], "mark-invalid")
    assert response.status_code == 404
    assert not NumberState.objects.filter(phone="+12125550101").exists()


# Bulk actions (managers) -------------------------------------------------------------------------


def bulk(client, log, action, keys, htmx=False, **extra):
    ids = [log["messages"][key].pk for key in keys]
    data = {"action": action, "message": ids, "next": f"{URL}?status=failed", "confirmed": "yes"}
    data |= extra
    return client.post(f"{URL}bulk/", data, headers=HTMX if htmx else {})


def flash(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_bulk_mark_invalid_flags_each_number_once(owner_client, org, owner, log):
    response = bulk(owner_client, log, "mark-invalid", ["unreachable", "spam", "landline"])
    assert response.status_code == 302 and response["Location"] == f"{URL}?status=failed"
    assert flash(response) == ["Success: 2 numbers marked invalid."]  # Ann's number once
    flagged = NumberState.objects.filter(organization=org, invalid_source="manual")
    assert set(flagged.values_list("phone", flat=True)) == {
        "+12125550101",
        "+12125550102",
        "+12125550103",
    }
    events = AuditEvent.objects.filter(action="mark_invalid", actor=owner, source_page="failed")
    assert events.count() == 2


def test_bulk_mark_valid_skips_automatic_flags_and_says_why(owner_client, org, log):
    response = bulk(owner_client, log, "mark-valid", ["manual", "automatic"])
    assert flash(response) == [
        "Success: 1 number marked valid. 1 skipped: flagged automatically; update the phone "
        "number in the profile instead."
    ]
    assert not NumberState.objects.get(phone="+12125550103").is_invalid
    assert NumberState.objects.get(phone="+12125550104").invalid_source == "automatic"


def test_bulk_mark_valid_of_automatic_flags_only_is_a_warning(owner_client, log):
    response = bulk(owner_client, log, "mark-valid", ["automatic"])
    [message] = get_messages(response.wsgi_request)
    assert message.level_tag == "warning"
    assert str(message).startswith("Success: 0 numbers marked valid. 1 skipped: flagged")


def test_bulk_retry_sends_again_through_the_pre_send_checks(
    owner_client, log, django_capture_on_commit_callbacks
):
    before = set(Message.objects.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        response = bulk(owner_client, log, "retry", ["unreachable", "manual", "bad_input"])
    # Only the number that can take a message is retried: the others would only add
    # another Skipped row.
    assert flash(response) == [
        "Success: 1 message queued again (the pre-send checks still apply). "
        "2 not retried: the number would be skipped."
    ]
    retried = {m.to_number: m for m in Message.objects.exclude(pk__in=before)}
    assert set(retried) == {"+12125550101"}
    assert retried["+12125550101"].status == "queued"  # went out
    assert [sent["to"] for sent in get_backend("locmem").outbox] == ["+12125550101"]


def test_bulk_with_htmx_redirects_the_page(owner_client, log):
    response = bulk(owner_client, log, "opt-out", ["landline"], htmx=True)
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"{URL}?status=failed"


def test_bulk_needs_a_selection(owner_client, log):
    response = bulk(owner_client, log, "mark-invalid", [])
    assert flash(response) == ["Select at least one message first."]


def test_bulk_ignores_another_organizations_messages(owner_client, other_org, log):
    stranger = make_contact(other_org, "+12125550199")
    theirs = make_message(stranger, make_sender(other_org), status="failed", error_code=30003)
    response = owner_client.post(f"{URL}bulk/", {"action": "mark-invalid", "message": [theirs.pk]})
    assert flash(response) == ["Select at least one message first."]
    assert not NumberState.objects.filter(phone="+12125550199", invalid_source="manual").exists()


def test_bulk_refuses_an_unknown_action(owner_client, log):
    assert bulk(owner_client, log, "delete", ["unreachable"]).status_code == 404


def test_bulk_actions_are_for_managers_only(teammate_client, owner_client, log):
    assert bulk(teammate_client, log, "mark-invalid", ["unreachable"]).status_code == 403
    assert not NumberState.objects.filter(phone="+12125550101").exists()
    assert 'id="bulk-form"' not in teammate_client.get(URL).content.decode()
    assert 'id="bulk-form"' in owner_client.get(URL).content.decode()


# CSV export (managers) ---------------------------------------------------------------------------


def export(client, query=""):
    response = client.get(f"{URL}export.csv{query}")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="failed-messages-')
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


HEADER = [
    "Date",
    "Contact",
    "Phone number",
    "Status",
    "Failed reason",
    "Error code",
    "Skip reason",
    "Sender",
    "Message",
]


def test_the_export_streams_every_row_with_a_header(owner_client, log):
    table = export(owner_client)
    assert table[0] == HEADER
    assert len(table) == 1 + len(log["messages"])
    assert table[1][1:7] == ["Ann Lee", "+12125550101", "Failed", "Unreachable", "30003", ""]


def test_the_export_follows_the_filters(owner_client, log):
    table = export(owner_client, "?status=skipped")
    by_phone = {row[2]: row for row in table[1:]}
    assert set(by_phone) == {
        "+12125550103",
        "+12125550104",
        "+12125550105",
        "+12125550106",
        "n/a",
    }
    assert by_phone["+12125550103"][4:7] == ["", "", "marked_invalid"]  # manual: no reason
    assert by_phone["+12125550104"][4] == "Landline; not SMS-capable"


def test_the_export_neutralises_formulas_and_keeps_phone_numbers(owner_client, org):
    sender = make_sender(org, phone_number="+14155550199", throughput=100)
    hostile = make_contact(
        org, "+16175550101", first_name='=HYPERLINK("http://x","y")', last_name=""
    )
    bodies = ["+1+1", "@SUM(A1)", "-1+2", "\t=1+1", "\r=1+1", "=2*3", "See you at 5"]
    for body in bodies:
        make_message(hostile, sender, status=Message.Status.FAILED, error_code=30003, body=body)
    table = export(owner_client, f"?sender={sender.pk}")
    assert len(table) == 1 + len(bodies)
    for row in table[1:]:
        assert row[1] == '\'=HYPERLINK("http://x","y")'
        assert (row[2], row[7]) == ("+16175550101", "+14155550199")
    shown = {row[8] for row in table[1:]}
    assert shown == {"'+1+1", "'@SUM(A1)", "'-1+2", "'\t=1+1", "'\r=1+1", "'=2*3", "See you at 5"}


def test_a_phone_column_that_holds_typed_text_is_neutralised(owner_client, org):
    sender = make_sender(org, throughput=100)
    typed = make_contact(org, "=1+1", first_name="Ann", last_name="Lee")
    make_message(
        typed,
        sender,
        status=Message.Status.SKIPPED,
        skip_reason="invalid_number",
        to_number="=1+1",
    )
    [row] = export(owner_client, f"?sender={sender.pk}")[1:]
    assert row[1:3] == ["Ann Lee", "'=1+1"]


def test_the_export_is_for_managers_only(teammate_client, owner_client, log):
    assert teammate_client.get(f"{URL}export.csv").status_code == 403
    assert "Export CSV" not in teammate_client.get(URL).content.decode()
    assert (
        "export.csv?status=skipped" in owner_client.get(URL, {"status": "skipped"}).content.decode()
    )


# Query count -----------------------------------------------------------------------------------

LOG_QUERIES = 8


def add_failures(org, owner, sender, count, start):
    for n in range(start, start + count):
        contact = make_contact(org, f"+1212400{n:04d}", first_name=f"Member{n}")
        if n % 3 == 0:
            NumberState.objects.of(org=org, phone=contact.phone_e164).mark_invalid(by=owner)
            make_message(contact, sender, status="skipped", skip_reason="marked_invalid")
        elif n % 3 == 1:
            NumberState.objects.of(org=org, phone=contact.phone_e164).opt_out(
                reason="staff", by=owner
            )
            make_message(contact, sender, status="skipped", skip_reason="opted_out")
        else:
            make_message(contact, sender, status="undelivered", error_code=30003)


@pytest.mark.parametrize("query", ["", "?status=skipped&sort=error_code", "?category=unreachable"])
def test_the_log_query_count_does_not_grow_with_rows(
    owner_client, org, owner, django_assert_max_num_queries, query
):
    sender = make_sender(org, throughput=100)
    add_failures(org, owner, sender, 5, 0)
    owner_client.get(URL + query)  # the session's first request
    cache.clear()
    with django_assert_max_num_queries(LOG_QUERIES) as few:
        assert owner_client.get(URL + query).status_code == 200
    add_failures(org, owner, sender, 55, 5)
    cache.clear()
    with django_assert_max_num_queries(LOG_QUERIES) as many:
        response = owner_client.get(URL + query)
    assert len(rows(response)) >= 5
    assert len(many) == len(few)


# Notes, Pause and the opt-out confirmation --------------------------------------------------------


def test_a_row_action_takes_a_note_for_the_staff_activity_report(
    teammate_client, owner_client, log
):
    message = log["messages"]["unreachable"]
    row_action(teammate_client, message, "mark-invalid", note="Wrong number, said the daughter")
    event = AuditEvent.objects.latest("id")
    assert (event.action, event.note) == ("mark_invalid", "Wrong number, said the daughter")
    report = owner_client.get("/reports/staff/").content.decode()
    assert "<td>Wrong number, said the daughter</td>" in report


def test_the_row_menu_asks_why_beside_each_action(teammate_client, log):
    actions_cell = cells(rows(teammate_client.get(URL))[log["messages"]["unreachable"].pk])[7]
    # One note for whichever action is pressed (Mark Invalid, Opt out, Pause).
    assert actions_cell.count('name="note"') == 1
    assert '<input type="hidden" name="next" value="/conversations/failed/">' in actions_cell
    assert re.findall(r'<option value="(\d+)"', actions_cell) == ["1", "3", "7", "14", "30"]
    assert """hx-vals='{"confirmed": "yes"}'""" in actions_cell
    assert 'hx-confirm="Opt out (212) 555-0101? No messages will go to it."' in actions_cell


def test_pause_from_a_row_with_a_note(teammate_client, org, log):
    message = log["messages"]["unreachable"]
    response = row_action(teammate_client, message, "pause", days="3", note="Travelling")
    assert toast(response)["message"].startswith("Success: messaging is paused until")
    assert '<span class="badge text-bg-warning">Paused</span>' in response.content.decode()
    state = NumberState.objects.get(organization=org, phone=message.to_number)
    assert timedelta(days=2, hours=23) < state.paused_until - timezone.now() <= timedelta(days=3)
    assert AuditEvent.objects.latest("id").note == "Travelling"


def test_a_row_opt_out_without_javascript_asks_on_a_page_first(teammate_client, org, log):
    message = log["messages"]["landline"]
    response = row_action(teammate_client, message, "opt-out", htmx=False, confirmed="")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Opt Bob Ray out?" in page and "(212) 555-0102" in page
    assert not NumberState.objects.filter(phone=message.to_number, opt_out_reason="staff").exists()
    done = row_action(teammate_client, message, "opt-out", htmx=False)
    assert done.status_code == 302
    assert NumberState.objects.get(phone=message.to_number).opt_out_reason == "staff"


def test_bulk_opt_out_asks_with_the_count_first(owner_client, log):
    response = bulk(owner_client, log, "opt-out", ["unreachable", "landline"], confirmed="")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Opt 2 numbers out?" in page and "No messages will go to 2 numbers." in page
    assert page.count('<input type="hidden" name="message"') == 2
    assert (
        not NumberState.objects.filter(opt_out_reason="staff")
        .exclude(phone="+12125550105")
        .exists()
    )


def test_bulk_pause_and_opt_out_keep_the_note(owner_client, org, log):
    bulk(owner_client, log, "pause", ["unreachable", "spam"], days="7", note="Away")
    state = NumberState.objects.get(organization=org, phone="+12125550101")
    assert state.is_paused(timezone.now())
    [event] = AuditEvent.objects.filter(action="pause", phone="+12125550101")
    assert event.note == "Away"  # one number, once, with the form's note
    response = bulk(owner_client, log, "opt-out", ["landline"], note="Asked at the desk")
    assert flash(response)[-1] == "Success: 1 number opted out."
    assert AuditEvent.objects.latest("id").note == "Asked at the desk"


def test_a_row_of_text_that_is_not_a_number_shows_it_as_entered(teammate_client, log):
    phone_cell = cells(rows(teammate_client.get(URL))[log["messages"]["bad_input"].pk])[2]
    assert '<span class="font-monospace">n/a</span>' in phone_cell
    assert "Not a phone number</span>" in phone_cell


def test_the_rows_come_from_the_tables_own_row_attributes(teammate_client, log):
    """Meta.row_attrs and the header checkbox's attributes are the ones the page shows."""
    page = teammate_client.get(URL).content.decode()
    for message in log["messages"].values():
        assert f'id="msg-{message.pk}"' in page
    assert 'data-select-all="message"' in page
