"""What staff see change without a reload, in Chromium: badges, tab counts and log rows after
a number action; a thread's statuses while its Details stay open; toasts that go away; the
confirmation before an opt-out; a phone that shows the thread it opened."""

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from deliverability.models import AuditEvent, NumberState
from tests.browser import ARTIFACTS
from tests.factories import make_contact, make_message, make_sender

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def club(org, owner):
    sender = make_sender(org, throughput=100)
    ann = make_contact(org, "+12125550101", first_name="Ann", last_name="Lee")
    bob = make_contact(org, "+12125550102", first_name="Bob", last_name="Ray")
    make_message(ann, sender, status=Message.Status.DELIVERED, body="See you Monday!")
    for n in range(4):
        make_message(
            bob, sender, status=Message.Status.UNDELIVERED, error_code=30003, body=f"Reminder {n}"
        )
    NumberState.objects.of(org=org, phone=ann.phone_e164).mark_invalid(by=owner)
    return {"sender": sender, "ann": ann, "bob": bob}


def no_reload(page):
    page.evaluate("window.__noReload = true")
    return lambda: page.evaluate("window.__noReload === true")


def test_mark_valid_updates_the_list_badge_and_the_tab_counts(browse, teammate, club):
    ann = club["ann"]
    page = browse(teammate)
    page.goto(f"/conversations/{ann.conversation.pk}/?filter=invalid")
    still_here = no_reload(page)
    tabs = page.get_by_role("navigation", name="Filter conversations")
    expect(tabs.get_by_role("link", name="Invalid 1")).to_be_visible()
    listed = page.locator("#conversation-list .list-group-item", has_text="Ann Lee")
    expect(listed.locator(".badge", has_text="Invalid")).to_be_visible()

    card = page.locator("#contact-card")
    card.get_by_role("button", name="More actions").click()
    card.get_by_role("button", name="Mark Phone as Valid").click()

    expect(tabs.get_by_role("link", name="Invalid 0")).to_be_visible()
    expect(page.locator("#conversation-list .badge", has_text="Invalid")).to_have_count(0)
    assert still_here()
    assert page.console_errors == []


def test_mark_invalid_on_one_log_row_badges_every_row_of_the_number(browse, teammate, club):
    bob_rows = list(club["bob"].conversation.messages.values_list("pk", flat=True))
    page = browse(teammate)
    page.goto("/conversations/failed/")
    still_here = no_reload(page)
    first = page.locator(f"#msg-{bob_rows[0]}")
    first.get_by_role("button", name="More actions").click()
    first.get_by_role("button", name="Mark Phone as Invalid").click()
    for pk in bob_rows:
        expect(page.locator(f"#msg-{pk} .badge", has_text="Invalid")).to_be_visible()
    assert still_here()


def test_opt_out_asks_first_and_takes_the_note(browse, teammate, club):
    bob = club["bob"]
    page = browse(teammate)
    page.goto(f"/conversations/{bob.conversation.pk}/")
    asked = []

    def answer(dialog):
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    card = page.locator("#contact-card")
    card.get_by_role("button", name="More actions").click()
    card.get_by_label("Why opt out? (optional)").fill("Asked at the front desk")
    shots = ARTIFACTS / "pages"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "staff-contact-menu-1280.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    card.get_by_label("Why opt out? (optional)").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "staff-contact-menu-390.png"))
    card.get_by_role("button", name="Opt out", exact=True).click()
    expect(card.locator(".badge", has_text="Opted out")).to_be_visible()
    assert asked == [
        "Opt Bob Ray out? No messages will go to (212) 555-0102 until a manager lifts it."
    ]
    assert AuditEvent.objects.get(action="opt_out").note == "Asked at the front desk"


def test_a_toast_closes_by_itself(browse, teammate, club):
    bob = club["bob"]
    page = browse(teammate)
    page.goto(f"/conversations/{bob.conversation.pk}/")
    card = page.locator("#contact-card")
    card.get_by_role("button", name="More actions").click()
    card.get_by_role("button", name="Mark Phone as Invalid").click()
    toast = page.locator("#toasts .toast")
    expect(toast).to_contain_text("Success")
    expect(toast).to_have_count(0, timeout=8_000)


def test_details_stay_open_while_the_status_moves_on(browse, teammate, club):
    bob = club["bob"]
    message = make_message(
        bob, club["sender"], status=Message.Status.SENT, provider_sid="SM" + "b" * 32, body="Hi"
    )
    page = browse(teammate)
    page.goto(f"/conversations/{bob.conversation.pk}/")
    block = page.locator(f"#message-{message.pk}")
    block.locator("summary").click()
    expect(block.locator("details")).to_have_attribute("open", "")
    Message.objects.filter(pk=message.pk).update(status="undelivered", error_code=30003)
    expect(block.locator(".badge", has_text="Undelivered")).to_be_visible(timeout=8_000)
    expect(block.locator("details")).to_have_attribute("open", "")
    expect(block.locator("details")).to_contain_text("What to do")


def test_a_new_reply_appears_in_the_open_thread(browse, teammate, club):
    ann = club["ann"]
    page = browse(teammate)
    page.goto(f"/conversations/{ann.conversation.pk}/")
    make_message(ann, club["sender"], status="received", direction="inbound", body="On my way")
    expect(page.locator("#thread")).to_contain_text("On my way", timeout=15_000)


def test_on_a_phone_opening_a_conversation_shows_its_thread(browse, teammate, club):
    page = browse(teammate)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/conversations/")
    page.locator("#conversation-list a", has_text="Bob Ray").click()
    expect(page.locator("#contact-card")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_landline_gets_no_composer_but_a_reason(browse, teammate, org, club):
    from deliverability.models import NumberFacts

    lily = make_contact(org, "+12125550150", first_name="Lily", last_name="Baker")
    make_message(lily, club["sender"], status=Message.Status.SKIPPED, skip_reason="landline")
    NumberFacts.objects.create(phone=lily.phone_e164, line_type="landline")
    page = browse(teammate)
    page.goto(f"/conversations/{lily.conversation.pk}/")
    expect(page.locator("#composer-off")).to_contain_text("Messaging is off for this number")
    expect(page.locator("#composer-body")).to_be_disabled()
    expect(page.get_by_role("button", name="Send")).to_be_disabled()


def test_a_broadcasts_failed_count_opens_the_log_filtered_and_the_filter_clears(
    browse, owner, org, club
):
    from conversations.models import Broadcast

    broadcast = Broadcast.objects.create(
        organization=org,
        sender=club["sender"],
        name="Pool news",
        body="Pool closed",
        state=Broadcast.State.FINISHED,
        recipient_count=1,
    )
    failed = make_message(
        club["bob"],
        club["sender"],
        status=Message.Status.UNDELIVERED,
        error_code=30003,
        broadcast=broadcast,
        body="Pool closed",
    )
    page = browse(owner)
    page.goto(f"/broadcasts/{broadcast.pk}/")
    page.get_by_role("link", name="1 failed or undelivered: show them").click()
    expect(page.locator(f"#msg-{failed.pk}")).to_be_visible()
    expect(page.locator("#failed-table tbody tr")).to_have_count(1)
    chips = page.get_by_label("Active filters")
    expect(chips).to_contain_text("Broadcast: Pool news")
    page.get_by_role("link", name="Clear the broadcast filter").click()
    expect(page.get_by_label("Active filters")).not_to_contain_text("Broadcast")
    expect(page.locator("#failed-table tbody tr")).to_have_count(5)
