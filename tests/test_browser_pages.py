"""Every page, for each role, at desktop (1280 px) and phone (390 px) width, in Chromium.

axe-core (vendored: tests/vendor/axe-core-4.10.3, never fetched at test time) runs on each
page and the test fails on any serious or critical violation. On a phone no page may be wider
than the screen (wide tables scroll inside their box). No page may log a console error (a CSP
violation is one). Screenshots of each page go to test-artifacts/pages/ for people to look at.
"""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from contacts import importer
from conversations.models import Broadcast, Message
from deliverability import consent, outcomes, replies
from deliverability.models import NumberFacts, NumberState
from tests.browser import ARTIFACTS
from tests.factories import make_contact, make_message, make_sender

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.10.3" / "axe.min.js"
DESKTOP, PHONE = 1280, 390


@pytest.fixture
def club(org, owner, teammate):
    """A club with a number in every state, failed rows, a broadcast, a review item, an import."""
    sender = make_sender(org, throughput=100, label="Front desk")
    ann = make_contact(org, "+12125550101", first_name="Ann", last_name="Lee")
    bob = make_contact(org, "+12125550102", first_name="Bob", last_name="Ray")
    cat = make_contact(org, "+12125550103", first_name="Cat", last_name="Ng")
    lily = make_contact(org, "+12125550150", first_name="Lily", last_name="Baker")
    eve = make_contact(org, "555-0122", first_name="Eve", last_name="Stone")
    make_message(ann, sender, status=Message.Status.DELIVERED, body="See you Monday!")
    make_message(ann, sender, status=Message.Status.SENT, provider_sid="SM" + "a" * 32)
    for n in range(4):
        make_message(
            bob, sender, status=Message.Status.UNDELIVERED, error_code=30003, body=f"Reminder {n}"
        )
    make_message(cat, sender, status=Message.Status.FAILED, error_code=21614)
    outcomes.error_apply(org=org, phone=cat.phone_e164, code=21614)
    NumberFacts.objects.create(phone=lily.phone_e164, line_type="landline")
    make_message(lily, sender, status=Message.Status.SKIPPED, skip_reason="landline")
    make_message(eve, sender, status=Message.Status.SKIPPED, skip_reason="invalid_number")
    inbound = make_message(
        ann, sender, status="received", direction="inbound", body="I want to cancel my membership"
    )
    consent.review_open(org=org, contact=ann, message=inbound, reply=replies.classify(inbound.body))
    broadcast = Broadcast.objects.create(
        organization=org,
        sender=sender,
        name="Pool closed Saturday for maintenance",
        body="Pool closed Saturday for maintenance. See you Sunday!",
        state=Broadcast.State.FINISHED,
        started_at=timezone.now() - timedelta(hours=1),
        finished_at=timezone.now(),
        recipient_count=2,
        skipped_counts={"landline": 1},
    )
    NumberState.objects.of(org=org, phone=ann.phone_e164).pause(
        until=timezone.now() + timedelta(days=3), by=owner, note="Travelling", source_page="contact"
    )
    NumberState.objects.of(org=org, phone=ann.phone_e164).resume(by=owner)
    upload = SimpleUploadedFile(
        "members.csv",
        b"first_name,last_name,phone,email\n"
        b"Zed,Verylongsurnameforwidth,+12125550140,zed.verylongsurname@example.com\n"
        b"Yan,Bad,n/a,yan@example.com\n",
    )
    job = importer.create_import(
        org=org, user=owner, filename="members.csv", upload=importer.read_upload(upload)
    )
    importer.run_import(job.pk)
    return {
        "ann": ann,
        "bob": bob,
        "cat": cat,
        "lily": lily,
        "eve": eve,
        "broadcast": broadcast,
        "import": job,
    }


def staff_pages(club):
    return {
        "home": "/",
        "conversations": "/conversations/",
        "conversation": f"/conversations/{club['bob'].conversation.pk}/",
        "conversation-landline": f"/conversations/{club['lily'].conversation.pk}/",
        "failed": "/conversations/failed/",
        "review": "/conversations/review/",
        "contacts": "/contacts/",
        "contact": f"/contacts/{club['ann'].pk}/",
    }


def manager_pages(club):
    return staff_pages(club) | {
        "broadcasts": "/broadcasts/",
        "broadcast": f"/broadcasts/{club['broadcast'].pk}/",
        "failed-broadcast": f"/conversations/failed/?broadcast={club['broadcast'].pk}",
        "import": "/contacts/import/",
        "import-result": f"/contacts/import/{club['import'].pk}/",
        "report-opt-outs": "/reports/opt_outs/",
        "report-health": "/reports/health/",
        "report-delivery": "/reports/delivery/",
        "report-staff": "/reports/staff/",
        "report-costs": "/reports/costs/",
        "twilio-history": "/reports/twilio-history/",
    }


def axe_violations(page):
    # Evaluated through the DevTools protocol: the page's CSP (no inline script) stays on.
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def check_every_page(browse, user, pages, role):
    out = ARTIFACTS / "pages"
    out.mkdir(parents=True, exist_ok=True)
    page = browse(user)
    problems = {}
    for width in (DESKTOP, PHONE):
        page.set_viewport_size({"width": width, "height": 900 if width == DESKTOP else 844})
        for name, url in pages.items():
            page.console_errors.clear()
            response = page.goto(url)
            assert response.status == 200, (url, response.status)
            page.wait_for_load_state("networkidle")
            found = []
            if page.console_errors:
                found.append({"console": list(page.console_errors)})
            if width == PHONE:
                scroll = page.evaluate("document.documentElement.scrollWidth")
                if scroll > PHONE:
                    found.append({"wider than the screen": scroll})
            found += axe_violations(page)
            page.screenshot(path=str(out / f"{role}-{name}-{width}.png"), full_page=True)
            if found:
                problems[f"{name} @ {width}px"] = found
    assert not problems, json.dumps(problems, indent=1)


def test_every_staff_page_is_accessible_fits_a_phone_and_logs_no_error(browse, teammate, club):
    check_every_page(browse, teammate, staff_pages(club), "staff")


def test_every_manager_page_is_accessible_fits_a_phone_and_logs_no_error(browse, owner, club):
    check_every_page(browse, owner, manager_pages(club), "manager")


def test_the_login_page_is_accessible_and_fits_a_phone(chromium, live_server):
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": PHONE, "height": 844}
    )
    page = context.new_page()
    page.goto("/accounts/login/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE
    assert axe_violations(page) == []
    favicon = page.request.get("/favicon.ico")
    assert favicon.status == 200 and "svg" in favicon.headers["content-type"]
    context.close()
