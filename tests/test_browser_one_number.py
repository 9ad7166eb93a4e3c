"""One number, one text; Sample Text is only a test; notes and confirmations; numbers as staff
read them; the Failed log on a phone — in Chromium, as a manager and a front desk use them."""

from datetime import time

import pytest
from playwright.sync_api import expect

from contacts.models import Contact
from conversations.models import Message
from deliverability.models import AuditEvent, NumberState
from tests.browser import ARTIFACTS, session_cookie_for
from tests.factories import make_contact, make_message, make_sender

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def club(org, owner):
    # Sending hours all day, so that the test never depends on the clock.
    org.quiet_hours_start, org.quiet_hours_end = time(0, 0), time(23, 59, 59)
    org.save()
    sender = make_sender(org, throughput=100, label="Front desk")
    chloe = make_contact(org, "+12125550118", first_name="Chloe", last_name="Allen")
    # Her partner, on the same phone: one number, one text.
    make_contact(org, "(212) 555-0118", first_name="Sam", last_name="Allen")
    bob = make_contact(org, "+12125550102", first_name="Bob", last_name="Ray")
    for n in range(3):
        make_message(
            bob, sender, status=Message.Status.UNDELIVERED, error_code=30003, body=f"Reminder {n}"
        )
    make_message(chloe, sender, status=Message.Status.FAILED, error_code=30003)
    return {"sender": sender, "chloe": chloe, "bob": bob}


def test_the_preview_skips_a_second_contact_on_the_same_number(browse, owner, club):
    page = browse(owner)
    page.goto("/broadcasts/")
    page.get_by_label("Message").fill("Pool closed Saturday for maintenance.")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#preview-card")
    expect(preview).to_contain_text("2 of 3 recipients")
    expect(preview).to_contain_text("Same number as another recipient")
    page.get_by_role("button", name="Send broadcast").click()
    expect(page.locator("#broadcast-confirm")).to_contain_text("Send to 2 people?")
    page.get_by_role("button", name="Yes, send to 2 people").click()
    expect(page.locator("#toasts")).to_contain_text("Success")
    sent = Message.objects.filter(broadcast__isnull=False).exclude(status="skipped")
    assert sorted(sent.values_list("to_number", flat=True)) == ["+12125550102", "+12125550118"]
    assert page.console_errors == []


def test_the_import_names_whose_number_a_row_has_and_skips_it(browse, owner, club, tmp_path):
    upload = tmp_path / "members.csv"
    upload.write_text(
        "first_name,last_name,phone\nChris,Allen,212.555.0118\nNew,Member,2125550177\n"
    )
    page = browse(owner)
    page.goto("/contacts/import/")
    page.get_by_label("CSV file (UTF-8, up to 10 MB)").set_input_files(str(upload))
    expect(page.get_by_label("Skip the row", exact=False)).to_be_checked()
    page.get_by_role("button", name="Upload and import").click()
    results = page.locator("table")
    expect(results).to_contain_text("Matches Chloe Allen")
    expect(results).to_contain_text("row skipped")
    assert not Contact.objects.filter(first_name="Chris").exists()
    assert Contact.objects.filter(first_name="New").exists()


def test_a_sample_text_to_a_stranger_adds_no_contact_and_its_outcome_appears(browse, owner, club):
    contacts = Contact.objects.count()
    page = browse(owner)
    page.goto("/broadcasts/")
    page.get_by_label("Message").fill("Testing the new wording.")
    page.locator("#sample-phone").fill("212 555 0199")
    page.get_by_role("button", name="Send Sample Text").click()
    status = page.locator("#sample-status")
    expect(status).to_contain_text("Sample Text to (212) 555-0199")
    sample = Message.objects.get(is_test=True)
    assert sample.conversation_id is None and Contact.objects.count() == contacts
    # The carrier answers: the outcome changes under the form without a reload.
    Message.objects.filter(pk=sample.pk).update(status="undelivered", error_code=30003)
    expect(status).to_contain_text("Failed: Unreachable", timeout=8_000)
    assert Contact.objects.count() == contacts


def test_mark_invalid_in_the_log_with_a_note_badges_every_row_and_the_tabs_change(
    browse, teammate, owner, club
):
    rows = list(club["bob"].conversation.messages.values_list("pk", flat=True))
    page = browse(teammate)
    page.goto("/conversations/failed/")
    page.evaluate("window.__noReload = true")
    first = page.locator(f"#msg-{rows[0]}")
    expect(first.locator('span[title="+12125550102"]')).to_have_text("(212) 555-0102")
    first.get_by_role("button", name="More actions").click()
    first.get_by_label("Why? (optional note)").fill("Wrong number, said his daughter")
    first.get_by_role("button", name="Mark Phone as Invalid").click()
    for pk in rows:
        expect(page.locator(f"#msg-{pk} .badge", has_text="Invalid")).to_be_visible()
    assert page.evaluate("window.__noReload === true")
    assert AuditEvent.objects.get(action="mark_invalid").note == "Wrong number, said his daughter"

    # The conversations page's tabs say so too, and the staff-activity report has the why.
    page.goto("/conversations/?filter=invalid")
    tabs = page.get_by_role("navigation", name="Filter conversations")
    expect(tabs.get_by_role("link", name="Invalid 1")).to_be_visible()
    report = browse(owner)
    report.goto("/reports/staff/")
    expect(report.locator("#report-table")).to_contain_text("Wrong number, said his daughter")


def test_a_row_opt_out_asks_first(browse, teammate, club):
    message = club["chloe"].conversation.messages.get()
    page = browse(teammate)
    page.goto("/conversations/failed/")
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    row = page.locator(f"#msg-{message.pk}")
    row.get_by_role("button", name="More actions").click()
    row.get_by_role("button", name="Opt out").click()
    assert asked == ["Opt out (212) 555-0118? No messages will go to it."]
    assert not NumberState.objects.filter(opt_out_reason="staff").exists()


def test_without_javascript_opt_out_asks_on_a_page_of_its_own(
    chromium, live_server, teammate, club
):
    chloe = club["chloe"]
    context = chromium.new_context(
        base_url=live_server.url, java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    context.add_cookies([session_cookie_for(teammate, live_server.url)])
    page = context.new_page()
    page.goto(f"/contacts/{chloe.pk}/")
    # Without JavaScript the menu's forms are plain forms; submit the opt-out one.
    form = page.locator(f'form[action="/numbers/{chloe.pk}/opt-out/"]')
    form.locator("input[name=note]").evaluate("(el) => el.value = 'Asked in person'")
    form.evaluate("(f) => f.submit()")
    expect(page.get_by_role("heading", name="Opt Chloe Allen out?")).to_be_visible()
    expect(page.locator("main")).to_contain_text("No messages will go to (212) 555-0118")
    assert not NumberState.objects.filter(opt_out_reason="staff").exists()
    (ARTIFACTS / "pages").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "pages" / "staff-confirm-opt-out-1280.png"))
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(ARTIFACTS / "pages" / "staff-confirm-opt-out-390.png"))
    page.get_by_role("button", name="Opt out").click()
    expect(page.locator("main")).to_contain_text("Opted out")
    assert NumberState.objects.get(phone=chloe.phone_e164).opt_out_reason == "staff"
    assert AuditEvent.objects.get(action="opt_out").note == "Asked in person"
    context.close()


def test_on_a_phone_the_log_keeps_rows_short_and_actions_in_reach(browse, teammate, club):
    message = club["chloe"].conversation.messages.get()
    page = browse(teammate)
    page.set_viewport_size(PHONE)
    page.goto("/conversations/failed/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    row = page.locator(f"#msg-{message.pk}")
    assert row.bounding_box()["height"] <= 80, row.bounding_box()
    menu = row.get_by_role("button", name="More actions")
    expect(menu).to_be_in_viewport()
    (ARTIFACTS / "pages").mkdir(parents=True, exist_ok=True)
    menu.click()
    pause = row.get_by_role("button", name="Pause messaging")
    expect(pause).to_be_in_viewport()
    page.screenshot(path=str(ARTIFACTS / "pages" / "staff-failed-menu-open-390.png"))
    pause.click()
    expect(row.locator(".badge", has_text="Paused")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "pages" / "staff-failed-after-pause-390.png"))
