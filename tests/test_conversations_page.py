"""The Conversations page (SPEC §7, seed 000): the Active / Invalid / Opted-Out / All filters and
their counts, search, the selected thread with each message's status as staff name it, the
polling partial, sending, the composer and its content hints, and the list's query count."""

import json
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.utils import timezone
from django.utils.formats import date_format

from contacts.models import Contact, Membership
from conversations.models import Message
from conversations.queries import conversation_list
from deliverability.models import NumberFacts, NumberState, OptIn
from tests.factories import (
    make_contact,
    make_conversation,
    make_member,
    make_message,
    make_org_and_manager,
    make_sender,
)
from tests.isolation import from_the_world, rows_for_the_module
from tests.isolation import org as org  # noqa: F401 - the world's, or an empty one
from tests.isolation import owner as owner  # noqa: F401

HTMX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The organization, its people and their conversations, made once for the module; each
    test that uses `people` reads fresh copies, and what it changes is rolled back after it."""
    with rows_for_the_module(django_db_blocker):
        org, owner = make_org_and_manager()
        teammate = make_member(org, Membership.Role.STAFF, username="teammate")
        sender = make_sender(org, throughput=100)
        yield SimpleNamespace(
            org=org,
            owner=owner,
            teammate=teammate,
            sender=sender,
            people=_people(org, owner, sender),
        )


@pytest.fixture
def teammate(request, org):
    return from_the_world(
        request, "teammate", lambda: make_member(org, Membership.Role.STAFF, username="staff")
    )


@pytest.fixture
def sender(request, org):
    return from_the_world(request, "sender", lambda: make_sender(org, throughput=100))


@pytest.fixture
def people(world):
    """Four conversations: an ordinary one, a manual Invalid, a staff opt-out, a paused one."""
    contacts = Contact.objects.in_bulk([contact.pk for contact in world.people.values()])
    return {name: contacts[contact.pk] for name, contact in world.people.items()}


def _people(org, owner, sender):
    ann = make_contact(org, "+12125550101", first_name="Ann", last_name="Lee")
    bob = make_contact(org, "+12125550102", first_name="Bob", last_name="Ray")
    cat = make_contact(org, "+12125550103", first_name="Cat", last_name="Ng")
    dan = make_contact(org, "+12125554321", first_name="Dan", last_name="Ortiz")
    for contact in (ann, bob, cat, dan):
        make_message(contact, sender, body=f"Hello {contact.first_name}")
    NumberState.objects.of(org=org, phone=bob.phone_e164).mark_invalid(by=owner)
    NumberState.objects.of(org=org, phone=cat.phone_e164).opt_out(
        reason="staff", by=owner, note="asked at the desk"
    )
    NumberState.objects.of(org=org, phone=dan.phone_e164).pause(
        until=timezone.now() + timedelta(days=3), by=owner
    )
    return {"ann": ann, "bob": bob, "cat": cat, "dan": dan}


def listed(response):
    """The contacts listed on the page, in order."""
    return [row.contact for row, _state in response.context["rows"]]


def tab_counts(response):
    return {key: count for key, _label, count in response.context["tabs"]}


def detail_url(contact):
    return f"/conversations/{contact.conversation.pk}/"


def toast(response):
    return json.loads(response["HX-Trigger"])["toast"]


# Filters and counts ------------------------------------------------------------------------------


def test_it_counts_each_filter_and_an_invalid_number_still_counts_as_active(
    teammate_client, people
):
    response = teammate_client.get("/conversations/")
    assert response.status_code == 200
    assert tab_counts(response) == {"active": 3, "invalid": 1, "opted_out": 1, "all": 4}
    page = response.content.decode()
    assert re.search(r"Active <span[^>]*>3</span>", page)
    assert re.search(r"Invalid <span[^>]*>1</span>", page)
    assert re.search(r"Opted-Out <span[^>]*>1</span>", page)


def test_it_lists_an_invalid_number_under_active_with_its_badge(teammate_client, people):
    response = teammate_client.get("/conversations/?filter=active")
    assert set(listed(response)) == {people["ann"], people["bob"], people["dan"]}
    page = response.content.decode()
    bob_row = page.split("Bob Ray", 1)[1].split("</a>", 1)[0]
    assert "Invalid" in bob_row


def test_it_shows_only_flagged_numbers_under_invalid(teammate_client, people):
    response = teammate_client.get("/conversations/?filter=invalid")
    assert listed(response) == [people["bob"]]


def test_it_shows_only_opted_out_numbers_under_opted_out(teammate_client, people):
    response = teammate_client.get("/conversations/?filter=opted_out")
    assert listed(response) == [people["cat"]]


def test_it_shows_the_opt_out_reason_and_date_on_the_contact_card(teammate_client, org, people):
    cat = people["cat"]
    response = teammate_client.get(f"{detail_url(cat)}?filter=opted_out")
    page = response.content.decode()
    opted_out_at = NumberState.objects.get(organization=org, phone=cat.phone_e164).opted_out_at
    day = date_format(timezone.localtime(opted_out_at, org.tzinfo), "M j, Y")
    assert f"<strong>Opted out</strong> (Staff) on {day}" in page
    assert '<span class="badge text-bg-secondary">Opted out</span>' in page


def test_it_lists_everyone_under_all(teammate_client, people):
    response = teammate_client.get("/conversations/?filter=all")
    assert len(listed(response)) == 4


def test_it_falls_back_to_active_for_an_unknown_filter(teammate_client, people):
    response = teammate_client.get("/conversations/?filter=bogus")
    assert response.context["filter"] == "active"
    assert len(listed(response)) == 3


def test_it_updates_the_counts_as_soon_as_a_state_changes(teammate_client, org, owner, people):
    assert tab_counts(teammate_client.get("/conversations/"))["invalid"] == 1
    NumberState.objects.of(org=org, phone=people["ann"].phone_e164).mark_invalid(by=owner)
    assert tab_counts(teammate_client.get("/conversations/"))["invalid"] == 2


def test_the_invalid_filter_follows_a_number_change_at_once(teammate_client, people):
    """The flagged contacts behind the Invalid filter are kept between views, and forgotten
    when a contact takes another number: Ann takes Bob's Invalid number, Bob a new one."""
    assert listed(teammate_client.get("/conversations/?filter=invalid")) == [people["bob"]]
    bobs_number = people["bob"].phone_raw
    for contact, raw in ((people["bob"], "212-555-0177"), (people["ann"], bobs_number)):
        teammate_client.post(f"/contacts/{contact.pk}/phone/", {"phone": raw, "note": ""})
    assert listed(teammate_client.get("/conversations/?filter=invalid")) == [people["ann"]]
    assert tab_counts(teammate_client.get("/conversations/"))["invalid"] == 1


def test_the_opted_out_filter_follows_a_lifted_opt_out_at_once(teammate_client, org, owner, people):
    assert listed(teammate_client.get("/conversations/?filter=opted_out")) == [people["cat"]]
    NumberState.objects.of(org=org, phone=people["cat"].phone_e164).opt_in(
        via=OptIn.STAFF, by=owner, note="ok"
    )
    assert listed(teammate_client.get("/conversations/?filter=opted_out")) == []


def test_a_search_within_the_invalid_filter(teammate_client, org, owner, people):
    NumberState.objects.of(org=org, phone=people["ann"].phone_e164).mark_invalid(by=owner)
    response = teammate_client.get("/conversations/?filter=invalid&q=ray")
    assert listed(response) == [people["bob"]]


def test_both_ways_to_the_flagged_conversations_list_the_same_rows(org, owner, people, sender):
    """Walking the newest-first index (many flagged, a short reach) and sorting every flagged
    conversation (few flagged, or a deep page) give the same rows in the same order."""
    for name in ("ann", "dan"):
        NumberState.objects.of(org=org, phone=people[name].phone_e164).mark_invalid(by=owner)
    make_message(people["dan"], sender, body="Newest")

    def rows(reach):
        return list(conversation_list(org, filter_name="invalid", reach=reach))

    walked, sorted_ = rows(reach=1), rows(reach=51)  # 3 flagged of 4: 3² > 1 × 4, not 51 × 4
    assert [c.contact for c in walked] == [people["dan"], people["bob"], people["ann"]]
    assert walked == sorted_


def test_it_lists_the_newest_conversation_first(teammate_client, people, sender):
    make_message(people["ann"], sender, body="Latest news")
    assert listed(teammate_client.get("/conversations/"))[0] == people["ann"]


def test_it_never_lists_another_organizations_conversations(
    teammate_client, other_org, people, sender
):
    stranger = make_contact(other_org, "+12125550199", first_name="Zed")
    make_message(stranger, make_sender(other_org))
    response = teammate_client.get("/conversations/?filter=all")
    assert stranger not in listed(response)
    assert tab_counts(response)["all"] == 4


# Search ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ("Ann", {"ann"}),
        ("lee", {"ann"}),
        ("Ann Lee", {"ann"}),
        ("4321", {"dan"}),  # the last four digits
        ("555-4321", {"dan"}),  # with the dashes staff type
        ("(212) 555-0102", {"bob"}),
        ("0102", {"bob"}),
        ("nobody", set()),
    ],
)
def test_it_searches_by_name_and_any_part_of_the_number(teammate_client, people, query, expected):
    response = teammate_client.get("/conversations/", {"filter": "all", "q": query})
    assert {c.first_name.lower() for c in listed(response)} == expected


def test_a_search_keeps_the_filter(teammate_client, people):
    response = teammate_client.get("/conversations/", {"filter": "invalid", "q": "Ann"})
    assert listed(response) == []


def test_the_search_box_answers_with_the_list_alone_for_htmx(teammate_client, people):
    response = teammate_client.get(
        "/conversations/",
        {"q": "Ann"},
        headers={**HTMX, "HX-Target": "conversation-list"},
    )
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="conversation-list">')
    assert "<html" not in page
    assert "Ann Lee" in page and "Dan Ortiz" not in page


def test_an_empty_search_says_so(teammate_client, people):
    page = teammate_client.get("/conversations/", {"q": "Zebra"}).content.decode()
    assert "No conversations match “Zebra”" in page


# The selected thread -----------------------------------------------------------------------------


def message_block(page, message):
    """The HTML of one message in the thread, up to the next message."""
    start = page.index(f'id="message-{message.pk}"')
    ends = [page.find('<div class="message ', start), page.find("</section>", start)]
    return page[start : min(end for end in ends if end != -1)]


@pytest.fixture
def thread(org, people, sender, settings):
    """One message in each status staff can see."""
    ann = people["ann"]
    now = timezone.now()
    old = now - settings.STATUS_UNAVAILABLE_AFTER - timedelta(minutes=5)
    return {
        "queuing": make_message(ann, sender, status="pending", body="Queued one"),
        "sent": make_message(
            ann, sender, status="sent", provider_sid="SM" + "1" * 32, sent_at=now, body="Sent one"
        ),
        "delivered": make_message(ann, sender, status="delivered", body="Delivered one"),
        "failed": make_message(ann, sender, status="failed", error_code=30005, body="Failed one"),
        "undelivered": make_message(
            ann, sender, status="undelivered", error_code=30007, body="Undelivered one"
        ),
        "skipped": make_message(
            ann, sender, status="skipped", skip_reason="paused", body="Skipped one"
        ),
        "unavailable": make_message(
            ann,
            sender,
            status="sent",
            provider_sid="SM" + "2" * 32,
            sent_at=old,
            body="Old one",
        ),
        "inbound": make_message(
            ann, sender, status="received", direction="inbound", body="Thanks!"
        ),
    }


def test_selecting_a_conversation_shows_its_thread_and_card(teammate_client, people, thread):
    response = teammate_client.get(detail_url(people["ann"]))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="contact-card"' in page and 'id="thread"' in page and 'id="composer"' in page
    for message in thread.values():
        assert f'id="message-{message.pk}"' in page
    assert 'aria-current="true"' in page  # the selected row in the list


@pytest.mark.parametrize(
    "key, label",
    [
        ("queuing", "Queuing"),
        ("sent", "Sent"),
        ("delivered", "Delivered"),
        ("failed", "Failed"),
        ("undelivered", "Undelivered"),
        ("skipped", "Skipped"),
        ("unavailable", "Status Unavailable"),
    ],
)
def test_each_message_shows_the_status_staff_know(teammate_client, people, thread, key, label):
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    block = message_block(page, thread[key])
    assert re.search(rf'<span class="badge [^"]*"[^>]*>{label}</span>', block)


@pytest.mark.parametrize(
    "key, reason",
    [
        ("failed", "Carrier response that the number does not exist"),
        ("undelivered", "Spam detected (carrier filtering)"),
    ],
)
def test_a_failed_message_gives_its_reason_on_hover_and_in_the_detail(
    teammate_client, people, thread, key, reason
):
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    block = message_block(page, thread[key])
    assert f'title="{reason}"' in block
    assert f'<dt class="col-4">Failed reason</dt><dd class="col-8">{reason}</dd>' in block
    assert str(thread[key].error_code) in block


def test_a_skipped_message_gives_its_skip_reason(teammate_client, people, thread):
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    block = message_block(page, thread["skipped"])
    assert 'title="Paused"' in block
    assert '<dt class="col-4">Skip reason</dt><dd class="col-8">Paused</dd>' in block


def test_a_recent_sent_message_is_not_status_unavailable(teammate_client, people, thread):
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    assert "Status Unavailable" not in message_block(page, thread["sent"])


def test_the_status_unavailable_window_is_a_setting(teammate_client, people, thread, settings):
    settings.STATUS_UNAVAILABLE_AFTER = timedelta(days=1)
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    assert "Status Unavailable" not in page


def test_the_thread_lists_messages_oldest_first(teammate_client, people, thread):
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    ids = [int(pk) for pk in re.findall(r'id="message-(\d+)"', page)]
    assert ids == sorted(ids)


def unread(contact, count=2):
    conversation = contact.conversation
    conversation.unread_count = count
    conversation.save(update_fields=["unread_count"])
    return conversation


def test_opening_a_conversation_writes_nothing(teammate_client, people):
    conversation = unread(people["ann"])
    assert teammate_client.get(detail_url(people["ann"])).status_code == 200
    assert teammate_client.get(f"{detail_url(people['ann'])}thread/").status_code == 200
    conversation.refresh_from_db()
    assert conversation.unread_count == 2


def test_the_opened_conversation_asks_to_be_marked_read(teammate_client, people):
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    read_url = f"{detail_url(people['ann'])}read/"
    [tag] = re.findall(rf'<div[^>]*hx-post="{re.escape(read_url)}"[^>]*>', page)
    assert 'hx-trigger="load"' in tag
    # The CSRF token travels in the body's hx-headers, as for every htmx request.
    assert re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"\w+\"\}'>", page)


def test_marking_a_conversation_read_clears_its_unread_count(teammate_client, people):
    conversation = unread(people["ann"])
    response = teammate_client.post(f"{detail_url(people['ann'])}read/", headers=HTMX)
    assert response.status_code == 204
    conversation.refresh_from_db()
    assert conversation.unread_count == 0
    listed_badges = teammate_client.get("/conversations/").content.decode()
    assert "2 new" not in listed_badges


def test_marking_read_without_javascript_returns_to_the_conversation(teammate_client, people):
    conversation = unread(people["ann"])
    response = teammate_client.post(f"{detail_url(people['ann'])}read/")
    assert response.status_code == 302
    assert response["Location"] == detail_url(people["ann"])
    conversation.refresh_from_db()
    assert conversation.unread_count == 0


def test_marking_read_is_a_post(teammate_client, people):
    conversation = unread(people["ann"])
    assert teammate_client.get(f"{detail_url(people['ann'])}read/").status_code == 405
    conversation.refresh_from_db()
    assert conversation.unread_count == 2


def test_marking_read_needs_the_csrf_token(teammate, people):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(teammate)
    conversation = unread(people["ann"])
    assert client.post(f"{detail_url(people['ann'])}read/").status_code == 403
    conversation.refresh_from_db()
    assert conversation.unread_count == 2


def test_another_organizations_conversation_cannot_be_marked_read(outsider_client, people):
    conversation = unread(people["ann"])
    response = outsider_client.post(f"{detail_url(people['ann'])}read/", headers=HTMX)
    assert response.status_code == 404
    conversation.refresh_from_db()
    assert conversation.unread_count == 2


def test_marking_read_requires_a_login(client, people):
    conversation = unread(people["ann"])
    response = client.post(f"{detail_url(people['ann'])}read/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    conversation.refresh_from_db()
    assert conversation.unread_count == 2


def test_another_organizations_conversation_is_not_found(outsider_client, people):
    assert outsider_client.get(detail_url(people["ann"])).status_code == 404


# The polling partial ---------------------------------------------------------------------------


def test_the_thread_partial_is_the_thread_alone_and_polls(teammate_client, people, thread):
    url = f"/conversations/{people['ann'].conversation.pk}/thread/"
    response = teammate_client.get(url, headers=HTMX)
    page = response.content.decode()
    assert page.lstrip().startswith('<section id="thread"')
    assert "<html" not in page and 'id="contact-card"' not in page
    assert f'id="message-{thread["delivered"].pk}"' in page
    # The thread itself is never swapped by the poll (an open Details would close): only
    # the poll element asks, every 3 s while a message awaits its status.
    assert 'hx-trigger="every 2s"' not in page
    updates = f"/conversations/{people['ann'].conversation.pk}/updates/"
    awaiting = f"{thread['queuing'].pk},{thread['sent'].pk}"
    assert f'hx-get="{updates}?after={thread["inbound"].pk}&amp;awaiting={awaiting}"' in page
    assert 'hx-trigger="every 3s"' in page


def updates(client, people, after, awaiting=()):
    url = f"/conversations/{people['ann'].conversation.pk}/updates/"
    query = {"after": after, "awaiting": ",".join(str(pk) for pk in awaiting)}
    return client.get(url, query, headers=HTMX).content.decode()


def test_the_poll_swaps_only_status_fragments_of_awaited_messages(teammate_client, people, thread):
    sent = thread["sent"]
    Message.objects.filter(pk=sent.pk).update(status="delivered")
    page = updates(teammate_client, people, thread["inbound"].pk, [thread["queuing"].pk, sent.pk])
    assert f'<div id="message-status-{sent.pk}" hx-swap-oob="innerHTML">' in page
    assert f'<dl id="message-detail-{sent.pk}" hx-swap-oob="innerHTML">' in page
    assert "Delivered</span>" in page
    assert f'id="message-{sent.pk}"' not in page  # the message (and its Details) stays
    assert 'id="thread-messages"' not in page  # nothing new
    # The queued one still awaits; the delivered one is no longer asked about.
    assert f'&amp;awaiting={thread["queuing"].pk}"' in page
    assert 'hx-trigger="every 3s"' in page


def test_once_every_status_is_final_the_poll_slows_to_new_messages(
    teammate_client, people, thread, sender
):
    delivered = thread["delivered"]
    page = updates(teammate_client, people, thread["inbound"].pk, [delivered.pk])
    assert "awaiting=" not in page and 'hx-trigger="every 10s"' in page
    reply = make_message(
        people["ann"], sender, status="received", direction="inbound", body="See you at 6"
    )
    page = updates(teammate_client, people, thread["inbound"].pk)
    assert '<div id="thread-messages" hx-swap-oob="beforeend">' in page
    assert "See you at 6" in page
    assert f"after={reply.pk}" in page


def test_the_poll_of_another_organizations_thread_is_not_found(outsider_client, people):
    url = f"/conversations/{people['ann'].conversation.pk}/updates/"
    assert outsider_client.get(url).status_code == 404


def test_the_thread_partial_shows_a_status_that_moved_on(teammate_client, people, thread):
    url = f"/conversations/{people['ann'].conversation.pk}/thread/"
    Message.objects.filter(pk=thread["sent"].pk).update(status="delivered")
    page = teammate_client.get(url).content.decode()
    assert ">Delivered</span>" in message_block(page, thread["sent"])


# Sending -----------------------------------------------------------------------------------------


def test_sending_with_htmx_returns_the_thread_and_a_toast(teammate_client, teammate, people):
    ann = people["ann"]
    response = teammate_client.post(
        f"/conversations/{ann.conversation.pk}/send/", {"body": "See you at 6"}, headers=HTMX
    )
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<section id="thread"')
    assert toast(response) == {"message": "Message queued.", "level": "success"}
    message = Message.objects.get(body="See you at 6")
    assert (message.direction, message.to_number, message.sent_by) == (
        "outbound",
        ann.phone_e164,
        teammate,
    )
    assert f'id="message-{message.pk}"' in response.content.decode()


def test_a_sent_message_goes_out_after_commit(
    teammate_client, people, django_capture_on_commit_callbacks
):
    from conversations.backends import get_backend

    with django_capture_on_commit_callbacks(execute=True):
        teammate_client.post(
            f"/conversations/{people['ann'].conversation.pk}/send/",
            {"body": "On its way"},
            headers=HTMX,
        )
    assert [m["body"] for m in get_backend("locmem").outbox] == ["On its way"]
    assert Message.objects.get(body="On its way").status == "queued"


def test_a_nul_character_is_left_out_of_a_sent_message(teammate_client, people):
    url = f"/conversations/{people['ann'].conversation.pk}/send/"
    response = teammate_client.post(url, {"body": "See\x00 you"}, headers=HTMX)
    assert toast(response) == {"message": "Message queued.", "level": "success"}
    assert Message.objects.filter(body="See you").exists()


def test_an_empty_message_is_refused_with_a_danger_toast(teammate_client, people):
    before = Message.objects.count()
    response = teammate_client.post(
        f"/conversations/{people['ann'].conversation.pk}/send/", {"body": "   "}, headers=HTMX
    )
    assert toast(response) == {"message": "Write a message first.", "level": "danger"}
    assert Message.objects.count() == before


def test_sending_without_a_sender_is_refused(teammate_client, org):
    contact = make_contact(org, "+12125550111")
    make_conversation(contact)
    response = teammate_client.post(
        f"/conversations/{contact.conversation.pk}/send/", {"body": "Hi"}, headers=HTMX
    )
    assert toast(response)["level"] == "danger"
    assert "No sending number" in toast(response)["message"]
    assert not Message.objects.filter(conversation__contact=contact).exists()


def test_sending_without_javascript_redirects_back_with_a_message(teammate_client, people):
    ann = people["ann"]
    response = teammate_client.post(
        f"/conversations/{ann.conversation.pk}/send/", {"body": "Plain form"}, follow=True
    )
    assert response.redirect_chain == [(detail_url(ann), 302)]
    assert "Message queued." in response.content.decode()
    assert Message.objects.filter(body="Plain form").exists()


def test_sending_to_an_invalid_number_is_skipped_not_sent(
    teammate_client, people, django_capture_on_commit_callbacks
):
    from conversations.backends import get_backend

    with django_capture_on_commit_callbacks(execute=True):
        teammate_client.post(
            f"/conversations/{people['bob'].conversation.pk}/send/",
            {"body": "Are you there?"},
            headers=HTMX,
        )
    message = Message.objects.get(body="Are you there?")
    assert (message.status, message.skip_reason) == ("skipped", "marked_invalid")
    assert get_backend("locmem").outbox == []


# The composer ------------------------------------------------------------------------------------


def test_the_composer_is_open_for_a_number_that_can_be_texted(teammate_client, people):
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    composer = page.split('<div id="composer"', 1)[1]
    assert f'hx-post="/conversations/{people["ann"].conversation.pk}/send/"' in composer
    assert re.search(r"<textarea[^>]*name=\"body\"[^>]*required", composer)


def test_the_composer_is_disabled_with_the_banner_when_the_number_is_invalid(
    teammate_client, people
):
    page = teammate_client.get(detail_url(people["bob"])).content.decode()
    assert "This number is marked as invalid." in page
    assert '<span class="badge text-bg-danger" title="Marked invalid by staff">Invalid</span>' in (
        page
    )
    composer = page.split('<div id="composer"', 1)[1].split("</form>", 1)[0]
    assert re.search(r'<textarea[^>]*id="composer-body"[^>]*disabled', composer)
    assert "/send/" not in composer


@pytest.mark.parametrize("who", ["cat", "dan"])
def test_the_composer_is_disabled_for_opted_out_and_paused_numbers(teammate_client, people, who):
    page = teammate_client.get(detail_url(people[who])).content.decode()
    composer = page.split('<div id="composer"', 1)[1].split("</form>", 1)[0]
    assert "disabled" in composer and "/send/" not in composer


def hints(client, body):
    response = client.post("/conversations/compose-hints/", {"body": body})
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    "body, shown",
    [
        ("See you at the pool", "19 characters · 1 segment (GSM-7)"),
        ("x" * 160, "160 characters · 1 segment (GSM-7)"),
        ("x" * 161, "161 characters · 2 segments (GSM-7)"),
        ("Café olé ☕", "10 characters · 1 segment (UCS-2)"),
        ("é" * 71 + "€", "72 characters · 1 segment (GSM-7)"),  # both are GSM-7
        ("ā" * 71, "71 characters · 2 segments (UCS-2)"),
    ],
)
def test_the_hints_count_characters_and_segments(teammate_client, body, shown):
    assert shown in hints(teammate_client, body)


def test_an_empty_body_has_no_segments(teammate_client):
    assert "0 characters · 0 segments (GSM-7)" in hints(teammate_client, "")


@pytest.mark.parametrize(
    "body, warning",
    [
        ("Book now: https://bit.ly/3xYz", "Shortened links"),
        ("See tinyurl.com/abc for details", "Shortened links"),
        ("FREE CLASS TODAY ONLY COME NOW", "ALL CAPS"),
        ("Party 🎉🎉🎉🎉 tonight", "Many emoji"),
        ("$$$ !!! *** ### @@@ %%% ^^^", "special characters"),
    ],
)
def test_the_hints_warn_about_what_carriers_filter(teammate_client, body, warning):
    assert warning in hints(teammate_client, body)


def test_plain_text_has_no_warning(teammate_client):
    page = hints(teammate_client, "Hi Ann, your class moved to 6pm. See www.riverside.example")
    assert "bi-exclamation-triangle" not in page


def test_a_warning_never_blocks_the_send(teammate_client, people):
    response = teammate_client.post(
        f"/conversations/{people['ann'].conversation.pk}/send/",
        {"body": "BIG NEWS https://bit.ly/x 🎉🎉🎉🎉"},
        headers=HTMX,
    )
    assert toast(response)["level"] == "success"


# Query counts ------------------------------------------------------------------------------------

LIST_QUERIES = 10


def add_conversations(org, owner, sender, count, start):
    for n in range(start, start + count):
        contact = make_contact(org, f"+1212400{n:04d}", first_name=f"Member{n}")
        make_message(contact, sender)
        if n % 3 == 0:
            NumberState.objects.of(org=org, phone=contact.phone_e164).mark_invalid(by=owner)
        elif n % 3 == 1:
            NumberState.objects.of(org=org, phone=contact.phone_e164).opt_out(
                reason="staff", by=owner
            )


@pytest.mark.parametrize("url", ["/conversations/", "/conversations/?filter=all&q=Member"])
def test_the_list_page_query_count_does_not_grow_with_conversations(
    teammate_client, org, owner, sender, django_assert_max_num_queries, url
):
    add_conversations(org, owner, sender, 5, 0)
    teammate_client.get(url)  # the session's first request
    cache.clear()
    with django_assert_max_num_queries(LIST_QUERIES) as few:
        assert teammate_client.get(url).status_code == 200
    add_conversations(org, owner, sender, 55, 5)
    cache.clear()
    with django_assert_max_num_queries(LIST_QUERIES) as many:
        response = teammate_client.get(url)
    assert len(listed(response)) >= 5
    assert len(many) == len(few)


def test_the_selected_conversation_query_count_does_not_grow_with_messages(
    teammate_client, org, people, sender, django_assert_max_num_queries
):
    ann = people["ann"]
    for _ in range(4):
        make_message(ann, sender, status="failed", error_code=30003)
    teammate_client.get(detail_url(ann))  # the session's first request
    cache.clear()
    with django_assert_max_num_queries(LIST_QUERIES + 6) as few:
        teammate_client.get(detail_url(ann))
    for _ in range(60):
        make_message(ann, sender, status="skipped", skip_reason="paused")
    cache.clear()
    with django_assert_max_num_queries(LIST_QUERIES + 6) as many:
        teammate_client.get(detail_url(ann))
    assert len(many) == len(few)


# The composer says when a message would be skipped ---------------------------------------------


def test_a_landline_cannot_be_texted_from_the_composer(teammate_client, org, sender):
    lily = make_contact(org, "+12125550150", first_name="Lily", last_name="Baker")
    make_message(lily, sender, body="Hello Lily")
    NumberFacts.objects.create(phone=lily.phone_e164, line_type="landline")
    page = teammate_client.get(detail_url(lily)).content.decode()
    composer = page.split('id="composer"', 1)[1]
    assert "Messaging is off for this number: landline." in composer
    assert "can't take text messages" in composer
    assert f'action="/conversations/{lily.conversation.pk}/send/"' not in composer
    assert 'id="composer-body" rows="3" disabled' in composer


def test_an_ordinary_number_keeps_its_composer(teammate_client, people):
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    assert "Messaging is off" not in page
    assert f'action="/conversations/{people["ann"].conversation.pk}/send/"' in page


# The demo's "Simulate a reply" -----------------------------------------------------------------


@pytest.fixture
def simulator(settings):
    settings.SMS_BACKEND = "simulator"


def test_a_simulated_stop_comes_in_through_the_webhook_and_opts_out(
    teammate_client, org, people, simulator, django_capture_on_commit_callbacks
):
    ann = people["ann"]
    page = teammate_client.get(detail_url(ann)).content.decode()
    assert "Simulate a reply" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = teammate_client.post(
            f"/conversations/{ann.conversation.pk}/simulate-reply/",
            {"body": ["STOP", ""]},
            headers=HTMX,
        )
    assert json.loads(response["HX-Trigger"])["toast"]["level"] == "success"
    inbound = ann.conversation.messages.get(direction="inbound", body="STOP")
    assert inbound.provider_sid.startswith("SM")
    state = NumberState.objects.get(organization=org, phone=ann.phone_e164)
    assert state.opt_out_reason == "stop_keyword"
    page = response.content.decode()
    assert 'id="contact-card" class="card mb-3"' in page and 'hx-swap-oob="true"' in page


def test_simulate_a_reply_is_only_there_with_the_simulator(teammate_client, people):
    ann = people["ann"]
    assert "Simulate a reply" not in teammate_client.get(detail_url(ann)).content.decode()
    url = f"/conversations/{ann.conversation.pk}/simulate-reply/"
    assert teammate_client.post(url, {"body": "STOP"}).status_code == 404


def test_simulate_a_reply_in_another_organization_is_not_found(outsider_client, people, simulator):
    url = f"/conversations/{people['ann'].conversation.pk}/simulate-reply/"
    assert outsider_client.post(url, {"body": "STOP"}).status_code == 404


def test_numbers_read_in_national_format_with_e164_on_hover(teammate_client, people):
    page = teammate_client.get(detail_url(people["ann"])).content.decode()
    assert '<span title="+12125550101">(212) 555-0101</span>' in page


@pytest.mark.parametrize("typed", ["(212) 555-0101", "212.555.0101", "+1 212 555 0101"])
def test_search_accepts_the_number_in_any_format(teammate_client, people, typed):
    response = teammate_client.get("/conversations/", {"q": typed})
    assert [c.first_name for c in listed(response)] == ["Ann"]
