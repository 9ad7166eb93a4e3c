"""Broadcasts and reports in a real browser: preview, send, the progress bar, every chart."""

from datetime import time

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from deliverability.models import NumberState
from tests.factories import make_contact, make_message, make_sender

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def club(org, owner):
    # Sending hours all day, so that the test never depends on the clock.
    org.quiet_hours_start, org.quiet_hours_end = time(0, 0), time(23, 59, 59)
    org.save()
    sender = make_sender(org, throughput=100, label="Front desk")
    contacts = [make_contact(org, f"+1212555{n:04d}") for n in range(100, 112)]
    NumberState.objects.of(org=org, phone=contacts[0].phone_e164).mark_invalid(by=owner)
    NumberState.objects.of(org=org, phone=contacts[1].phone_e164).opt_out(
        reason="staff", by=owner, note="Asked"
    )
    make_message(contacts[2], sender, status=Message.Status.UNDELIVERED, error_code=30003)
    make_message(contacts[3], sender, status=Message.Status.DELIVERED)
    return {"sender": sender, "contacts": contacts}


def test_preview_then_send_and_watch_the_progress_bar_finish(browse, owner, club):
    page = browse(owner)
    page.goto("/broadcasts/")
    page.get_by_label("Message").fill("Pool closed Saturday for maintenance.")

    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#preview-card")
    expect(preview).to_contain_text("10 of 11 recipients")
    expect(preview).to_contain_text("Marked invalid")

    page.get_by_role("button", name="Send broadcast").click()
    expect(page.locator("#broadcast-confirm")).to_contain_text("Send to 10 people?")
    assert not Message.objects.filter(broadcast__isnull=False).exists()
    page.get_by_role("button", name="Yes, send to 10 people").click()
    expect(page.locator("#toasts")).to_contain_text("Success")
    expect(page.locator("#broadcast-bar")).to_have_attribute("value", "100", timeout=20_000)
    expect(page.locator("#broadcast-progress")).to_contain_text("Finished")
    assert Message.objects.filter(broadcast__isnull=False, status="queued").count() == 10


@pytest.mark.parametrize("report", ["opt_outs", "health", "delivery", "staff"])
def test_each_report_renders(browse, owner, club, report):
    page = browse(owner)
    page.goto(f"/reports/{report}/")
    expect(page.locator("#report-table")).to_be_visible()
    if report != "staff":
        expect(page.locator("figure.report-chart svg").first).to_be_visible()
    assert page.console_errors == []
