"""The flows of the help article (seed 000) in a real browser: Chromium, no reload, keyboard."""

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from deliverability import outcomes
from deliverability.models import NumberState
from tests.factories import make_contact, make_message, make_sender

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def riverside(org, owner, teammate):
    sender = make_sender(org, throughput=100)
    ann = make_contact(org, "+12125550101", first_name="Ann", last_name="Lee")
    bob = make_contact(org, "+12125550102", first_name="Bob", last_name="Ray")
    cat = make_contact(org, "+12125550103", first_name="Cat", last_name="Ng")
    make_message(ann, sender, status=Message.Status.DELIVERED, body="See you Monday!")
    make_message(bob, sender, status=Message.Status.UNDELIVERED, error_code=30003)
    make_message(cat, sender, status=Message.Status.FAILED, error_code=21614)
    outcomes.error_apply(org=org, phone=cat.phone_e164, code=21614)
    return {"sender": sender, "ann": ann, "bob": bob, "cat": cat}


def _mark_no_reload(page):
    page.evaluate("window.__noReload = true")


def _assert_no_reload(page):
    assert page.evaluate("window.__noReload === true"), "the page reloaded"


def test_mark_invalid_from_the_conversations_page_and_back(browse, teammate, riverside):
    ann = riverside["ann"]
    page = browse(teammate)
    page.goto(f"/conversations/{ann.conversation.pk}/")
    _mark_no_reload(page)
    card = page.locator("#contact-card")

    card.get_by_role("button", name="More actions").click()
    expect(card.get_by_text("opt them out instead")).to_be_visible()
    card.get_by_role("button", name="Mark Phone as Invalid").click()

    expect(page.locator("#toasts")).to_contain_text("Success")
    expect(card.get_by_text("This number is marked as invalid.")).to_be_visible()
    expect(card.locator(".badge", has_text="Invalid")).to_be_visible()
    expect(page.locator("#composer-body")).to_be_disabled()
    _assert_no_reload(page)

    card.get_by_role("button", name="More actions").click()
    card.get_by_role("button", name="Mark Phone as Valid").click()
    expect(card.get_by_text("This number is marked as invalid.")).to_have_count(0)
    expect(page.locator("#composer-body")).to_be_enabled()
    _assert_no_reload(page)
    assert page.console_errors == []


def test_mark_invalid_from_a_failed_and_disabled_row(browse, teammate, riverside):
    bob = riverside["bob"]
    page = browse(teammate)
    page.goto("/conversations/")
    page.locator("#conversations-menu").click()
    page.get_by_role("link", name="Failed & Disabled Messages").click()
    expect(page.get_by_role("heading", name="Failed & Disabled Messages")).to_be_visible()
    _mark_no_reload(page)
    message = Message.objects.get(to_number=bob.phone_e164)
    row = page.locator(f"#msg-{message.pk}")

    row.get_by_role("button", name="More actions").click()
    row.get_by_role("button", name="Mark Phone as Invalid").click()

    expect(page.locator("#toasts")).to_contain_text("Success")
    expect(page.locator(f"#msg-{message.pk} .badge", has_text="Invalid")).to_be_visible()
    _assert_no_reload(page)
    assert NumberState.objects.get(phone=bob.phone_e164).invalid_source == "manual"


def test_an_automatically_flagged_row_offers_no_mark_valid(browse, teammate, riverside):
    cat = riverside["cat"]
    page = browse(teammate)
    page.goto("/conversations/failed/")
    message = Message.objects.get(to_number=cat.phone_e164)
    row = page.locator(f"#msg-{message.pk}")

    expect(row).to_contain_text("Landline; not SMS-capable")
    row.get_by_role("button", name="More actions").click()
    expect(row.get_by_role("button", name="Opt out")).to_be_visible()
    # A retry would only be skipped again: the menu says so instead of offering it.
    expect(row.get_by_text("No retry: it would be skipped (marked invalid)")).to_be_visible()
    expect(row.get_by_role("button", name="Retry")).to_have_count(0)
    expect(row.get_by_role("button", name="Mark Phone as Valid")).to_have_count(0)
    expect(row.get_by_role("button", name="Mark Phone as Invalid")).to_have_count(0)


def test_bulk_mark_invalid(browse, owner, riverside):
    page = browse(owner)
    page.goto("/conversations/failed/")
    for contact in (riverside["bob"], riverside["cat"]):
        message = Message.objects.get(to_number=contact.phone_e164)
        page.locator(f"#msg-{message.pk} input[name=message]").check()

    page.get_by_role("button", name="Mark Invalid", exact=True).click()

    expect(page.locator("#toasts")).to_contain_text("1 number marked invalid")
    expect(page.locator("#toasts")).to_contain_text("1 skipped")
    assert NumberState.objects.get(phone=riverside["bob"].phone_e164).invalid_source == "manual"


def test_each_conversation_filter(browse, teammate, org, owner, riverside):
    NumberState.objects.of(org=org, phone=riverside["ann"].phone_e164).opt_out(
        reason="staff", by=owner
    )
    page = browse(teammate)
    page.goto("/conversations/")
    people = page.locator(".conversation-list")

    expect(page.get_by_role("link", name=re.compile(r"^Active"))).to_contain_text("2")
    expect(people).to_contain_text("Cat Ng")  # Invalid numbers are still Active.
    expect(people).not_to_contain_text("Ann Lee")

    page.get_by_role("link", name=re.compile(r"^Invalid")).click()
    expect(people).to_contain_text("Cat Ng")
    expect(people).not_to_contain_text("Bob Ray")

    page.get_by_role("link", name=re.compile(r"^Opted-Out")).click()
    expect(people).to_contain_text("Ann Lee")
    expect(people).not_to_contain_text("Cat Ng")

    page.get_by_role("link", name=re.compile(r"^All")).click()
    for name in ("Ann Lee", "Bob Ray", "Cat Ng"):
        expect(people).to_contain_text(name)

    page.get_by_label("Search by name or number").fill("0102")
    expect(people).to_contain_text("Bob Ray")
    expect(people).not_to_contain_text("Ann Lee")


def test_the_three_dot_menus_work_by_keyboard(browse, teammate, riverside):
    bob = riverside["bob"]
    page = browse(teammate)
    page.goto(f"/conversations/{bob.conversation.pk}/")
    card = page.locator("#contact-card")
    button = card.get_by_role("button", name="More actions")

    button.focus()
    page.keyboard.press("Enter")
    expect(card.locator(".dropdown-menu")).to_be_visible()
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("document.activeElement.textContent.trim()")
    assert focused == "Mark Phone as Invalid"
    page.keyboard.press("Enter")

    expect(card.get_by_text("This number is marked as invalid.")).to_be_visible()
