"""The three-dot menu of the contact card (SPEC §7, seed 000): each action at
/numbers/<contact_id>/<action>/ with htmx (the card comes back, with a toast) and without
JavaScript (a redirect with a message), who may use it, what it refuses, and its audit."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone
from django.utils.formats import date_format

from conversations.models import Message
from deliverability.models import AuditEvent, NumberState
from tests.factories import make_contact, make_message, make_sender

HTMX = {"HX-Request": "true"}
ACTIONS = ["mark-invalid", "mark-valid", "opt-out", "lift-opt-out", "pause", "resume", "recheck"]
BEST_PRACTICE = (
    "Best practice: if the person doesn't want messages, opt them out instead. Mark invalid "
    "only when the number itself is the problem (wrong number, landline, not in service)."
)


@pytest.fixture
def ann(org):
    contact = make_contact(org, "+12125550101", first_name="Ann", last_name="Lee")
    make_message(contact, make_sender(org, throughput=100), body="See you Monday")
    return contact


def act(client, contact, action, htmx=True, **data):
    data.setdefault("page", "conversations")
    data.setdefault("next", f"/conversations/{contact.conversation.pk}/")
    # An opt-out as confirmed: the form's hx-vals (or the confirmation page) adds it.
    data.setdefault("confirmed", "yes")
    return client.post(f"/numbers/{contact.pk}/{action}/", data, headers=HTMX if htmx else {})


def toast(response):
    return json.loads(response["HX-Trigger"])["toast"]


def state(org, phone="+12125550101"):
    return NumberState.objects.filter(organization=org, phone=phone).first()


def card(response):
    """The re-rendered contact card (without the out-of-band composer)."""
    page = response.content.decode()
    start = page.index('<section id="contact-card"')
    return page[start : page.index("</section>", start)]


def menu(page):
    start = page.index('<div class="dropdown-menu dropdown-menu-end contact-menu"')
    return page[start : page.index("Failed &amp; Disabled Messages", start)]


def local_day(org, moment):
    return date_format(timezone.localtime(moment, org.tzinfo), "M j, Y")


def flag_automatically(org, code=21614, reason="Landline; not SMS-capable", phone="+12125550101"):
    NumberState.objects.of(org=org, phone=phone).flag_automatically(
        code=code, reason=reason, cause=f"Twilio {code}"
    )


# Mark Phone as Invalid ---------------------------------------------------------------------------


def test_marking_invalid_rerenders_the_card_with_the_badge_and_the_banner(
    teammate_client, org, ann
):
    response = act(teammate_client, ann, "mark-invalid")
    assert response.status_code == 200
    shown = card(response)
    assert '<span class="badge text-bg-danger" title="Marked invalid by staff">Invalid</span>' in (
        shown
    )
    assert "This number is marked as invalid." in shown
    assert toast(response)["level"] == "success"
    assert "Success" in toast(response)["message"]
    assert state(org).invalid_source == "manual"


def test_marking_invalid_on_the_conversations_page_disables_the_composer_out_of_band(
    teammate_client, ann
):
    page = act(teammate_client, ann, "mark-invalid").content.decode()
    composer = page.split('<div id="composer" hx-swap-oob="true">', 1)[1]
    assert re.search(r'<textarea[^>]*id="composer-body"[^>]*disabled', composer)
    assert "/send/" not in composer


@pytest.mark.parametrize("source_page", ["contact", "failed", "contacts", ""])
def test_other_pages_get_the_card_without_a_composer(teammate_client, ann, source_page):
    page = act(teammate_client, ann, "mark-invalid", page=source_page).content.decode()
    assert 'id="contact-card"' in page
    assert 'id="composer"' not in page


def test_the_menu_recommends_opting_out_beside_mark_invalid(teammate_client, ann):
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    offered = menu(page)
    invalid_at = offered.index("Mark Phone as Invalid")
    assert offered.index(BEST_PRACTICE) > invalid_at
    assert offered.index(BEST_PRACTICE) < offered.index("Opt out")


def test_the_menu_button_is_named_more_actions(teammate_client, ann):
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert re.search(
        rf'<button[^>]*aria-label="More actions"[^>]*id="contact-actions-{ann.pk}"', page
    )
    assert f'aria-labelledby="contact-actions-{ann.pk}"' in page


def test_marking_invalid_twice_is_refused_and_not_offered(teammate_client, org, owner, ann):
    NumberState.objects.of(org=org, phone=ann.phone_e164).mark_invalid(by=owner)
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Mark Phone as Invalid" not in menu(page)
    response = act(teammate_client, ann, "mark-invalid")
    assert toast(response) == {
        "message": "This number is already marked as invalid.",
        "level": "danger",
    }


def test_a_contact_without_a_usable_number_cannot_be_marked(teammate_client, org):
    contact = make_contact(org, "n/a")
    make_message(contact)
    response = act(teammate_client, contact, "mark-invalid")
    assert toast(response)["message"] == "This contact has no valid phone number."
    assert not NumberState.objects.exists()
    assert "Mark Phone as Invalid" not in menu(response.content.decode())


# Mark Phone as Valid ---------------------------------------------------------------------------


def test_a_manual_flag_is_marked_valid_and_the_composer_opens_again(
    teammate_client, org, owner, ann
):
    NumberState.objects.of(org=org, phone=ann.phone_e164).mark_invalid(by=owner)
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Mark Phone as Valid" in menu(page)
    response = act(teammate_client, ann, "mark-valid")
    shown = card(response)
    assert ">Invalid</span>" not in shown
    assert "This number is marked as invalid." not in shown
    assert toast(response) == {
        "message": "Success: the phone number is marked as valid. Messaging can resume.",
        "level": "success",
    }
    composer = response.content.decode().split('<div id="composer" hx-swap-oob="true">', 1)[1]
    assert f'hx-post="/conversations/{ann.conversation.pk}/send/"' in composer
    assert not state(org).is_invalid


def test_an_automatic_flag_is_not_offered_mark_valid(teammate_client, org, ann):
    flag_automatically(org)
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Mark Phone as Valid" not in menu(page)
    assert "Failed reason: Landline; not SMS-capable (code 21614)" in page


def test_an_automatic_flag_refuses_mark_valid_and_nothing_changes(teammate_client, org, ann):
    flag_automatically(org)
    audits = AuditEvent.objects.count()
    response = act(teammate_client, ann, "mark-valid")
    assert response.status_code == 200
    assert toast(response) == {
        "message": "This number was flagged automatically (Landline; not SMS-capable) and "
        "cannot be marked valid. Update the phone number in the member's profile instead.",
        "level": "danger",
    }
    flagged = state(org)
    assert (flagged.invalid_source, flagged.invalid_code) == ("automatic", "21614")
    assert AuditEvent.objects.count() == audits
    assert "This number is marked as invalid." in card(response)


def test_a_number_that_is_not_invalid_cannot_be_marked_valid(teammate_client, ann):
    response = act(teammate_client, ann, "mark-valid")
    assert toast(response)["level"] == "danger"
    assert "not marked as invalid" in toast(response)["message"]


# Opt out and lifting it ------------------------------------------------------------------------


def test_opting_out_shows_the_reason_and_the_date(teammate_client, org, ann):
    response = act(teammate_client, ann, "opt-out", note="Asked at the front desk")
    shown = card(response)
    day = local_day(org, state(org).opted_out_at)
    assert '<span class="badge text-bg-secondary">Opted out</span>' in shown
    assert f"<strong>Opted out</strong> (Staff) on {day}" in shown
    assert toast(response) == {"message": "Success: the contact is opted out.", "level": "success"}
    assert state(org).opt_out_reason == "staff"
    assert "disabled" in response.content.decode().split('<div id="composer"', 1)[1]


def test_opting_out_twice_is_refused(teammate_client, ann):
    act(teammate_client, ann, "opt-out")
    response = act(teammate_client, ann, "opt-out")
    assert toast(response) == {"message": "This number is already opted out.", "level": "danger"}


def test_staff_may_not_lift_an_opt_out(teammate_client, org, owner, ann):
    NumberState.objects.of(org=org, phone=ann.phone_e164).opt_out(reason="staff", by=owner)
    response = act(teammate_client, ann, "lift-opt-out", note="They asked")
    assert response.status_code == 403
    assert state(org).is_opted_out
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Lift opt-out" not in menu(page)


def test_a_manager_lifts_a_staff_opt_out_with_a_note(owner_client, org, owner, ann):
    NumberState.objects.of(org=org, phone=ann.phone_e164).opt_out(reason="staff", by=owner)
    page = owner_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Lift opt-out" in menu(page)
    response = act(owner_client, ann, "lift-opt-out", note="Member asked to hear from us again")
    assert toast(response) == {"message": "Success: the opt-out is lifted.", "level": "success"}
    assert not state(org).is_opted_out
    assert "Opted out" not in card(response)
    event = AuditEvent.objects.latest("id")
    assert (event.action, event.actor, event.note) == (
        "opt_in",
        owner,
        "Member asked to hear from us again",
    )


@pytest.mark.parametrize("action", ["mark-invalid", "opt-out", "pause"])
def test_a_note_with_a_nul_character_is_kept_without_it(teammate_client, org, ann, action):
    response = act(teammate_client, ann, action, note="Asked\x00 at the desk", days=3)
    assert toast(response)["level"] == "success"
    assert AuditEvent.objects.latest("id").note == "Asked at the desk"


@pytest.mark.parametrize("note", ["", "   "])
def test_lifting_an_opt_out_needs_a_note(owner_client, org, owner, ann, note):
    NumberState.objects.of(org=org, phone=ann.phone_e164).opt_out(reason="staff", by=owner)
    response = act(owner_client, ann, "lift-opt-out", note=note)
    assert toast(response)["level"] == "danger"
    assert "a note is required" in toast(response)["message"]
    assert state(org).is_opted_out


@pytest.mark.parametrize("reason", ["stop_keyword", "carrier_stop", "deactivated"])
def test_a_manager_cannot_lift_an_opt_out_the_contact_or_carrier_made(
    owner_client, org, ann, reason
):
    NumberState.objects.of(org=org, phone=ann.phone_e164).opt_out(reason=reason, cause="test")
    page = owner_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Lift opt-out" not in menu(page)
    response = act(owner_client, ann, "lift-opt-out", note="They asked")
    assert toast(response)["level"] == "danger"
    assert toast(response)["message"].startswith("Only the contact can lift this opt-out")
    assert state(org).opt_out_reason == reason


# Pause and resume --------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [1, 3, 7, 14, 30])
def test_pausing_shows_until_when(teammate_client, org, ann, days):
    response = act(teammate_client, ann, "pause", days=days)
    paused_until = state(org).paused_until
    assert timedelta(days=days) - timedelta(minutes=1) < paused_until - timezone.now()
    assert paused_until - timezone.now() <= timedelta(days=days)
    day = local_day(org, paused_until)
    assert f'<span class="badge text-bg-warning">Paused until {day}</span>' in card(response)
    assert toast(response) == {
        "message": f"Success: messaging is paused until {day}.",
        "level": "success",
    }


@pytest.mark.parametrize(
    "days, refusal",
    [
        (31, "A pause can last at most 30 days."),
        (100000000, "A pause can last at most 30 days."),
        ("9" * 400, "A pause can last at most 30 days."),
        (0, "Choose how long to pause messaging."),
        (-3, "Choose how long to pause messaging."),
        (-100000000, "Choose how long to pause messaging."),
        ("a week", "Choose how long to pause messaging."),
        ("7.5", "Choose how long to pause messaging."),
        ("1e3", "Choose how long to pause messaging."),
        ("", "Choose how long to pause messaging."),
    ],
)
def test_a_pause_outside_1_to_30_days_is_refused(teammate_client, org, ann, days, refusal):
    response = act(teammate_client, ann, "pause", days=days)
    assert response.status_code == 200
    assert toast(response) == {"message": refusal, "level": "danger"}
    assert "Pause messaging" in menu(card(response))  # the form is offered again
    assert state(org) is None or state(org).paused_until is None


@pytest.mark.parametrize(
    "days, refusal",
    [
        (100000000, "A pause can last at most 30 days."),
        (-5, "Choose how long to pause messaging."),
        ("abc", "Choose how long to pause messaging."),
    ],
)
def test_a_refused_pause_without_javascript_says_why(teammate_client, org, ann, days, refusal):
    response = act(teammate_client, ann, "pause", htmx=False, days=days)
    assert response.status_code == 302
    assert response["Location"] == f"/conversations/{ann.conversation.pk}/"
    assert refusal in teammate_client.get(response["Location"]).content.decode()
    assert state(org) is None or state(org).paused_until is None


def test_a_pause_without_a_length_is_refused(teammate_client, org, ann):
    response = teammate_client.post(
        f"/numbers/{ann.pk}/pause/", {"page": "conversations"}, headers=HTMX
    )
    assert toast(response) == {"message": "Choose how long to pause messaging.", "level": "danger"}
    assert state(org) is None or state(org).paused_until is None


def test_the_pause_menu_offers_1_to_30_days(teammate_client, ann):
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert re.findall(r'<option value="(\d+)"', menu(page)) == ["1", "3", "7", "14", "30"]


def test_resuming_ends_the_pause(teammate_client, org, ann):
    act(teammate_client, ann, "pause", days=7)
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Resume messaging" in menu(page) and "Pause messaging" not in menu(page)
    response = act(teammate_client, ann, "resume")
    assert "Paused until" not in card(response)
    assert toast(response) == {"message": "Success: messaging is resumed.", "level": "success"}
    assert state(org).paused_until is None


def test_resuming_a_number_that_is_not_paused_is_refused(teammate_client, ann):
    response = act(teammate_client, ann, "resume")
    assert toast(response) == {
        "message": "Messaging to this number is not paused.",
        "level": "danger",
    }


# Re-check number ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["21614", "30006", "lookup"])
def test_recheck_is_offered_for_flags_a_lookup_can_disprove(teammate_client, org, ann, code):
    flag_automatically(org, code=code)
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Re-check number" in menu(page)


@pytest.mark.parametrize("code", [21211, 21265, 21268, 30005])
def test_recheck_is_refused_for_flags_a_lookup_cannot_disprove(teammate_client, org, ann, code):
    flag_automatically(org, code=code, reason="Carrier says no")
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Re-check number" not in menu(page)
    audits = AuditEvent.objects.count()
    response = act(teammate_client, ann, "recheck")
    assert toast(response)["level"] == "danger"
    assert toast(response)["message"].startswith("Re-check applies only to numbers flagged")
    assert state(org).invalid_code == str(code)
    assert AuditEvent.objects.count() == audits


def test_recheck_is_not_offered_for_a_manual_flag_or_no_flag(teammate_client, org, owner, ann):
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Re-check number" not in menu(page)
    NumberState.objects.of(org=org, phone=ann.phone_e164).mark_invalid(by=owner)
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "Re-check number" not in menu(page)


def test_a_recheck_that_finds_a_mobile_clears_the_flag(teammate_client, org, teammate, ann):
    flag_automatically(org)  # +1 212 555-0101 is a mobile in the simulator's plan
    response = act(teammate_client, ann, "recheck")
    assert toast(response) == {
        "message": "Success: the number is mobile now; the flag is cleared.",
        "level": "success",
    }
    assert not state(org).is_invalid
    assert "This number is marked as invalid." not in card(response)
    event = AuditEvent.objects.latest("id")
    assert (event.action, event.actor, event.source_page) == (
        "auto_valid",
        teammate,
        "conversations",
    )


def test_a_recheck_that_finds_a_landline_keeps_the_flag(teammate_client, org, teammate):
    landline = make_contact(org, "+12125550150")
    make_message(landline)
    flag_automatically(org, phone=landline.phone_e164)
    response = act(teammate_client, landline, "recheck")
    assert toast(response) == {
        "message": "Re-checked: the number is still landline; the flag stays.",
        "level": "success",
    }
    assert state(org, landline.phone_e164).invalid_source == "automatic"
    assert AuditEvent.objects.latest("id").action == "recheck"


# Every action: without JavaScript, its audit, the wrong method, the wrong organization ----------


def prepare(action, org, owner, contact):
    """The state each action needs to succeed."""
    phone = contact.phone_e164
    if action == "mark-valid":
        NumberState.objects.of(org=org, phone=phone).mark_invalid(by=owner)
    elif action == "lift-opt-out":
        NumberState.objects.of(org=org, phone=phone).opt_out(reason="staff", by=owner)
    elif action == "resume":
        NumberState.objects.of(org=org, phone=phone).pause(
            until=timezone.now() + timedelta(days=2), by=owner
        )
    elif action == "recheck":
        flag_automatically(org, phone=phone)


DATA = {"lift-opt-out": {"note": "They asked again"}, "pause": {"days": 3}}
AUDITED_AS = {
    "mark-invalid": "mark_invalid",
    "mark-valid": "mark_valid",
    "opt-out": "opt_out",
    "lift-opt-out": "opt_in",
    "pause": "pause",
    "resume": "resume",
    "recheck": "auto_valid",
}


@pytest.mark.parametrize("action", ACTIONS)
def test_without_javascript_each_action_redirects_back_with_a_message(
    owner_client, org, owner, ann, action
):
    prepare(action, org, owner, ann)
    back = f"/conversations/{ann.conversation.pk}/?filter=all"
    response = act(owner_client, ann, action, htmx=False, next=back, **DATA.get(action, {}))
    assert response.status_code == 302
    assert response["Location"] == back
    [message] = get_messages(response.wsgi_request)
    assert message.level_tag == "success"
    assert str(message).startswith(("Success", "Re-checked"))
    assert "HX-Trigger" not in response


def test_without_javascript_a_refusal_comes_back_as_an_error(teammate_client, org, ann):
    flag_automatically(org)
    response = teammate_client.post(
        f"/numbers/{ann.pk}/mark-valid/",
        {"page": "conversations", "next": f"/conversations/{ann.conversation.pk}/"},
        follow=True,
    )
    assert response.redirect_chain == [(f"/conversations/{ann.conversation.pk}/", 302)]
    assert "flagged automatically" in response.content.decode()
    assert "text-bg-danger border-0" in response.content.decode()


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/x", "home", ""])
def test_without_javascript_an_outside_next_falls_back_to_the_profile(
    teammate_client, ann, next_url
):
    response = act(teammate_client, ann, "opt-out", htmx=False, next=next_url)
    assert response["Location"] == f"/contacts/{ann.pk}/"


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("source_page", ["conversations", "contact", "failed", "contacts"])
def test_each_action_is_audited_with_the_page_it_came_from(
    owner_client, org, owner, ann, action, source_page
):
    prepare(action, org, owner, ann)
    data = {"note": "Desk"} | DATA.get(action, {})
    act(owner_client, ann, action, page=source_page, **data)
    event = AuditEvent.objects.latest("id")
    assert event.action == AUDITED_AS[action]
    assert (event.actor, event.contact, event.phone) == (owner, ann, ann.phone_e164)
    assert event.source_page == source_page
    assert event.note == data["note"]
    assert event.before != event.after or action == "recheck"


def test_an_unknown_source_page_is_not_recorded(teammate_client, ann):
    act(teammate_client, ann, "opt-out", page="<script>")
    assert AuditEvent.objects.latest("id").source_page == ""


@pytest.mark.parametrize("action", ACTIONS)
def test_each_action_refuses_get(owner_client, ann, action):
    assert owner_client.get(f"/numbers/{ann.pk}/{action}/").status_code == 405


@pytest.mark.parametrize("action", ACTIONS)
def test_another_organizations_contact_is_not_found_and_nothing_changes(
    outsider_client, org, owner, ann, action
):
    prepare(action, org, owner, ann)
    before = list(NumberState.objects.values())
    audits = AuditEvent.objects.count()
    response = act(outsider_client, ann, action, **DATA.get(action, {}))
    assert response.status_code == 404
    assert list(NumberState.objects.values()) == before
    assert AuditEvent.objects.count() == audits


def test_an_unknown_action_is_not_found(owner_client, ann):
    assert act(owner_client, ann, "delete").status_code == 404


def test_a_number_shared_by_two_contacts_shows_the_flag_on_both(teammate_client, org, ann):
    twin = make_contact(org, ann.phone_e164, first_name="Sam")
    make_message(twin)
    act(teammate_client, ann, "mark-invalid")
    page = teammate_client.get(f"/conversations/{twin.conversation.pk}/").content.decode()
    assert "This number is marked as invalid." in page


def test_history_is_kept_when_a_number_is_marked_invalid(teammate_client, ann):
    act(teammate_client, ann, "mark-invalid")
    page = teammate_client.get(f"/conversations/{ann.conversation.pk}/").content.decode()
    assert "See you Monday" in page
    assert Message.objects.filter(conversation=ann.conversation).count() == 1


# Why and confirm ---------------------------------------------------------------------------------


def test_the_card_asks_why_and_opt_out_asks_first(teammate_client, ann):
    page = teammate_client.get(f"/contacts/{ann.pk}/").content.decode()
    assert "Why is the number invalid? (optional)" in page
    assert "Why opt out? (optional)" in page
    assert "Why pause? (optional)" in page
    assert f'hx-confirm="Opt {ann} out? No messages will go to' in page


@pytest.mark.parametrize(
    "action, data",
    [
        ("mark-invalid", {"note": "Wrong number, said the daughter"}),
        ("opt-out", {"note": "Asked at the front desk"}),
        ("pause", {"days": "7", "note": "Travelling until the 20th"}),
    ],
)
def test_the_note_shows_in_the_staff_activity_report(
    teammate_client, owner_client, ann, action, data
):
    assert toast(act(teammate_client, ann, action, page="contact", **data))["level"] == "success"
    report = owner_client.get("/reports/staff/").content.decode()
    assert f"<td>{data['note']}</td>" in report


def test_without_javascript_opt_out_asks_on_a_page_first_and_changes_nothing(
    teammate_client, org, ann
):
    back = f"/conversations/{ann.conversation.pk}/"
    response = teammate_client.post(
        f"/numbers/{ann.pk}/opt-out/", {"next": back, "page": "contact", "note": "Asked"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Opt {ann} out?" in page
    assert "No messages will go to" in page and "(212) 555-0101" in page
    assert "until a manager lifts the opt-out" in page
    # The same form again, confirmed: the note and the page it came from go with it.
    assert '<input type="hidden" name="note" value="Asked">' in page
    assert '<input type="hidden" name="confirmed" value="yes">' in page
    assert f'<a class="btn btn-outline-secondary" href="{back}">Cancel</a>' in page
    assert state(org) is None or not state(org).is_opted_out
    confirmed = teammate_client.post(
        f"/numbers/{ann.pk}/opt-out/",
        {"next": back, "page": "contact", "note": "Asked", "confirmed": "yes"},
    )
    assert confirmed.status_code == 302
    assert state(org).opt_out_reason == "staff"
    assert AuditEvent.objects.latest("id").note == "Asked"


def test_the_card_posts_the_confirmation_with_htmx(teammate_client, ann):
    page = teammate_client.get(f"/contacts/{ann.pk}/").content.decode()
    assert re.search(r'hx-confirm="Opt [^"]*\(212\) 555-0101[^"]*"', page)
    assert """hx-vals='{"confirmed": "yes"}'""" in page


def test_every_card_action_comes_from_one_menu_rule(owner_client, org, owner, ann):
    """The card offers exactly what actions.number_menu decides, in its order."""
    from deliverability.actions import LABELS, number_overview

    NumberState.objects.of(org=org, phone=ann.phone_e164).pause(
        until=timezone.now() + timedelta(days=2), by=owner
    )
    overview = number_overview(org=org, contact=ann, is_manager=True)
    page = owner_client.get(f"/contacts/{ann.pk}/").content.decode()
    shown = [label for label in re.findall(r">([^<>]+)</button>", menu(page)) if label.strip()]
    assert shown == [LABELS[action] for action in overview.menu]
    assert overview.menu == ("mark-invalid", "opt-out", "resume")
