"""The Review queue (SPEC §3): one-click decisions with an Undo, the 10-business-day deadline,
the org alert, the staff-activity report; /conversations/review/ with and without htmx."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from conversations.models import Message
from deliverability import consent, replies
from deliverability.models import AuditEvent, NumberState, OptOutReason, OrgAlert, ReviewItem
from deliverability.tasks import apply_review_deadlines
from tests.factories import make_contact, make_message

HTMX = {"HX-Request": "true"}
PHONE = "+12125550123"
NEW_YORK = ZoneInfo("America/New_York")


def reply_from(contact, body, at=None):
    """An inbound reply from `contact`, queued the way the inbound pipeline queues it."""
    message = make_message(
        contact,
        direction=Message.Direction.INBOUND,
        status=Message.Status.RECEIVED,
        body=body,
        from_number=contact.phone_e164,
    )
    if at is not None:
        Message.objects.filter(pk=message.pk).update(created_at=at)
        message.refresh_from_db()
    return consent.review_open(
        org=contact.organization, contact=contact, message=message, reply=replies.classify(body)
    )


@pytest.fixture
def member(org):
    return make_contact(org, PHONE, first_name="Dana")


@pytest.fixture
def possible_opt_out(member):
    return reply_from(member, "I want to cancel my membership")


@pytest.fixture
def resubscribe(org, member):
    NumberState.objects.of(org=org, phone=PHONE).opt_out(
        reason=OptOutReason.STOP_KEYWORD, cause="STOP"
    )
    return reply_from(member, "please text me again")


def opt_out_reason(org):
    state = NumberState.objects.filter(organization=org, phone=PHONE).first()
    return state.opt_out_reason if state else ""


def decide(client, item, decision, note="", htmx=False):
    return client.post(
        f"/conversations/review/{item.pk}/decide/",
        {"decision": decision, "note": note},
        headers=HTMX if htmx else {},
    )


def undo(client, item, htmx=False):
    return client.post(f"/conversations/review/{item.pk}/undo/", headers=HTMX if htmx else {})


# Business days ----------------------------------------------------------------------------------


def test_the_deadline_is_ten_business_days_after_receipt_in_the_orgs_time_zone():
    friday_evening = datetime(2026, 3, 6, 18, 0, tzinfo=NEW_YORK)
    due = consent.add_business_days(friday_evening, 10, NEW_YORK)
    assert due == datetime(2026, 3, 20, 18, 0, tzinfo=NEW_YORK)  # two weekends skipped
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=NEW_YORK)
    assert consent.add_business_days(saturday, 1, NEW_YORK).weekday() == 0  # Monday
    assert consent.add_business_days(saturday, -1, NEW_YORK).weekday() == 4  # Friday


def test_a_queued_reply_is_due_from_when_it_was_received(member):
    received = datetime(2026, 4, 6, 15, 0, tzinfo=UTC)  # a Monday, no clock change ahead
    item = reply_from(member, "stop sending me class times, just billing", at=received)
    assert item.received_at == received
    assert item.due_at == received + timedelta(days=14)
    assert item.rule == "partial_request"
    assert item.rule_label == "Asks to stop some messages only, or with conditions"


# The page -----------------------------------------------------------------------------------------


def test_the_queue_shows_each_reply_with_why_it_was_flagged(teammate_client, possible_opt_out):
    page = teammate_client.get("/conversations/review/").content.decode()
    assert "I want to cancel my membership" in page
    assert "Mentions stopping or cancelling; meaning unclear" in page
    assert 'value="opt_out">Opt out</button>' in page
    assert 'value="not_opt_out">Not an opt-out</button>' in page


def test_the_conversation_marks_the_reply_that_waits_for_review(
    teammate_client, possible_opt_out, member
):
    page = teammate_client.get(f"/conversations/{member.conversation.pk}/").content.decode()
    assert "Waiting in the Review queue" in page
    assert "no broadcasts go to it until staff decide" in page  # the contact's banner
    decide(teammate_client, possible_opt_out, "not_opt_out")
    page = teammate_client.get(f"/conversations/{member.conversation.pk}/").content.decode()
    assert "Waiting in the Review queue" not in page


def test_the_navigation_counts_the_replies_waiting(
    teammate_client, outsider_client, possible_opt_out
):
    assert (
        '1<span class="visually-hidden"> waiting</span>'
        in teammate_client.get("/").content.decode()
    )
    assert "waiting</span>" not in outsider_client.get("/").content.decode()


def test_a_resubscribe_request_offers_resubscribe_or_keep_opted_out(teammate_client, resubscribe):
    page = teammate_client.get("/conversations/review/").content.decode()
    assert 'value="resubscribe">Resubscribe</button>' in page
    assert 'value="keep_opted_out">Keep opted out</button>' in page


def test_another_orgs_queue_is_invisible_and_its_items_are_404(
    outsider_client, possible_opt_out, org
):
    page = outsider_client.get("/conversations/review/").content.decode()
    assert "I want to cancel my membership" not in page
    assert decide(outsider_client, possible_opt_out, "opt_out").status_code == 404
    assert undo(outsider_client, possible_opt_out).status_code == 404
    possible_opt_out.refresh_from_db()
    assert possible_opt_out.is_pending
    assert opt_out_reason(org) == ""


def test_decisions_are_posts_only(teammate_client, possible_opt_out):
    assert (
        teammate_client.get(f"/conversations/review/{possible_opt_out.pk}/decide/").status_code
        == 405
    )


# Deciding -----------------------------------------------------------------------------------------


def test_opt_out_opts_the_number_out_audited_with_the_note(
    teammate_client, teammate, possible_opt_out, org
):
    response = decide(teammate_client, possible_opt_out, "opt_out", note="Called her to check")

    assert response.status_code == 302  # without JavaScript: back to the queue
    assert opt_out_reason(org) == OptOutReason.STOP_KEYWORD
    event = AuditEvent.objects.get(action=AuditEvent.Action.OPT_OUT)
    assert event.actor == teammate
    assert event.source_page == "review"
    assert "Called her to check" in event.note
    assert "I want to cancel my membership" in event.note
    possible_opt_out.refresh_from_db()
    assert possible_opt_out.decision == ReviewItem.Decision.OPT_OUT
    assert possible_opt_out.decided_by == teammate
    # Back on the queue without JavaScript, the decision is listed with its Undo.
    page = teammate_client.get(response["Location"]).content.decode()
    assert "Just decided" in page
    assert f'action="/conversations/review/{possible_opt_out.pk}/undo/"' in page


def test_not_an_opt_out_changes_nothing_but_is_audited_and_frees_broadcasts(
    teammate_client, teammate, possible_opt_out, org
):
    from deliverability import eligibility

    assert eligibility.check_number(org=org, phone=PHONE, broadcast=True) == "pending_review"
    decide(teammate_client, possible_opt_out, "not_opt_out")

    assert opt_out_reason(org) == ""
    assert AuditEvent.objects.get(action=AuditEvent.Action.REVIEW_DISMISSED).actor == teammate
    assert eligibility.check_number(org=org, phone=PHONE, broadcast=True) is None


def test_resubscribe_lifts_the_opt_out(teammate_client, teammate, resubscribe, org):
    decide(teammate_client, resubscribe, "resubscribe")

    assert opt_out_reason(org) == ""
    assert AuditEvent.objects.get(action=AuditEvent.Action.OPT_IN).actor == teammate


def test_keep_opted_out_keeps_it(teammate_client, resubscribe, org):
    decide(teammate_client, resubscribe, "keep_opted_out")

    assert opt_out_reason(org) == OptOutReason.STOP_KEYWORD
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REVIEW_KEPT_OPTED_OUT).exists()


def test_resubscribe_cannot_lift_an_opt_out_only_the_member_can(teammate_client, member, org):
    NumberState.objects.of(org=org, phone=PHONE).opt_out(
        reason=OptOutReason.CARRIER_STOP, cause="21610"
    )
    item = reply_from(member, "please text me again")

    response = decide(teammate_client, item, "resubscribe", htmx=True)

    assert "text START" in response.headers["HX-Trigger"]
    assert opt_out_reason(org) == OptOutReason.CARRIER_STOP
    item.refresh_from_db()
    assert item.is_pending


@pytest.mark.parametrize("decision", ["resubscribe", "keep_opted_out", "", "nonsense"])
def test_a_decision_of_another_kind_is_refused_without_a_500(
    teammate_client, possible_opt_out, org, decision
):
    response = decide(teammate_client, possible_opt_out, decision, htmx=True)

    assert response.status_code == 200
    assert "does not apply" in response.headers["HX-Trigger"]
    possible_opt_out.refresh_from_db()
    assert possible_opt_out.is_pending


def test_a_second_decision_is_refused(teammate_client, owner_client, possible_opt_out, org):
    decide(teammate_client, possible_opt_out, "not_opt_out")
    response = decide(owner_client, possible_opt_out, "opt_out", htmx=True)

    assert "already been reviewed" in response.headers["HX-Trigger"]
    assert opt_out_reason(org) == ""


def test_with_htmx_the_item_is_swapped_with_its_decision_and_an_undo(
    teammate_client, possible_opt_out
):
    response = decide(teammate_client, possible_opt_out, "opt_out", htmx=True)

    page = response.content.decode()
    assert f'id="review-{possible_opt_out.pk}"' in page
    assert "Opted out" in page
    assert f"/conversations/review/{possible_opt_out.pk}/undo/" in page
    assert "Opted out." in response.headers["HX-Trigger"]


# Undo -------------------------------------------------------------------------------------------


def test_undo_of_an_opt_out_lifts_it_and_the_reply_waits_again(
    teammate_client, possible_opt_out, org
):
    decide(teammate_client, possible_opt_out, "opt_out")
    response = undo(teammate_client, possible_opt_out)

    assert response.status_code == 302
    assert opt_out_reason(org) == ""
    possible_opt_out.refresh_from_db()
    assert possible_opt_out.is_pending
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REVIEW_UNDONE).exists()
    page = teammate_client.get("/conversations/review/").content.decode()
    assert 'value="opt_out">Opt out</button>' in page


def test_undo_of_a_resubscribe_opts_the_number_out_again(teammate_client, resubscribe, org):
    decide(teammate_client, resubscribe, "resubscribe")
    undo(teammate_client, resubscribe, htmx=True)

    assert opt_out_reason(org) == OptOutReason.STOP_KEYWORD


def test_undo_is_short_lived(teammate_client, possible_opt_out, org):
    decide(teammate_client, possible_opt_out, "opt_out")
    ReviewItem.objects.update(decided_at=timezone.now() - timedelta(minutes=11))

    response = undo(teammate_client, possible_opt_out, htmx=True)

    assert "can no longer be undone" in response.headers["HX-Trigger"]
    assert opt_out_reason(org) == OptOutReason.STOP_KEYWORD
    page = teammate_client.get("/conversations/review/").content.decode()
    assert "/undo/" not in page


def test_undo_does_not_lift_an_opt_out_the_decision_did_not_make(
    teammate_client, possible_opt_out, org
):
    NumberState.objects.of(org=org, phone=PHONE).opt_out(
        reason=OptOutReason.CARRIER_STOP, cause="21610"
    )
    decide(teammate_client, possible_opt_out, "opt_out")
    undo(teammate_client, possible_opt_out)

    assert opt_out_reason(org) == OptOutReason.CARRIER_STOP


def test_a_later_stop_settles_the_numbers_waiting_possible_opt_outs(teammate_client, member, org):
    item = reply_from(member, "I want to cancel my membership")
    message = make_message(
        member, direction=Message.Direction.INBOUND, body="STOP", from_number=PHONE
    )

    consent.reply_apply(org=org, contact=member, message=message, reply=replies.classify("STOP"))

    item.refresh_from_db()
    assert item.decision == ReviewItem.Decision.OPT_OUT
    assert item.decided_by is None
    assert not consent.may_undo(item)  # nothing a person decided, nothing to take back
    page = teammate_client.get("/conversations/review/").content.decode()
    assert "Nothing to review." in page


def test_a_later_start_settles_the_numbers_resubscribe_request(resubscribe, member, org):
    message = make_message(
        member, direction=Message.Direction.INBOUND, body="START", from_number=PHONE
    )

    consent.reply_apply(org=org, contact=member, message=message, reply=replies.classify("START"))

    assert opt_out_reason(org) == ""
    resubscribe.refresh_from_db()
    assert (resubscribe.decision, resubscribe.decided_by) == ("resubscribe", None)


# The deadline and the alert -----------------------------------------------------------------------


def test_an_undecided_possible_opt_out_becomes_an_opt_out_at_its_deadline(possible_opt_out, org):
    consent.review_deadlines_apply(now=possible_opt_out.due_at - timedelta(minutes=1))
    assert opt_out_reason(org) == ""

    assert apply_review_deadlines.apply().get() == 0  # not yet due at the real clock
    consent.review_deadlines_apply(now=possible_opt_out.due_at)

    assert opt_out_reason(org) == OptOutReason.STOP_KEYWORD
    event = AuditEvent.objects.get(action=AuditEvent.Action.OPT_OUT)
    assert (event.actor, event.system_cause) == (None, "deadline")
    possible_opt_out.refresh_from_db()
    assert possible_opt_out.decision == ReviewItem.Decision.DEADLINE


def test_the_periodic_task_applies_deadlines(member, org):
    long_ago = timezone.now() - timedelta(days=30)
    reply_from(member, "I want to cancel my membership", at=long_ago)

    assert apply_review_deadlines.apply().get() == 1
    assert opt_out_reason(org) == OptOutReason.STOP_KEYWORD


def test_a_resubscribe_request_never_opts_in_by_deadline(resubscribe, org):
    consent.review_deadlines_apply(now=resubscribe.due_at + timedelta(days=1))
    assert opt_out_reason(org) == OptOutReason.STOP_KEYWORD
    resubscribe.refresh_from_db()
    assert resubscribe.is_pending


def test_the_alert_shows_once_an_item_waits_more_than_a_business_day(owner_client, member, org):
    monday_9am = datetime(2026, 3, 2, 9, 0, tzinfo=NEW_YORK)
    reply_from(member, "I want to cancel my membership", at=monday_9am)

    consent.review_deadlines_apply(now=monday_9am + timedelta(hours=20))
    assert not OrgAlert.objects.filter(resolved_at__isnull=True).exists()

    consent.review_deadlines_apply(now=monday_9am + timedelta(days=1, minutes=1))
    alert = OrgAlert.objects.get(resolved_at__isnull=True)
    assert alert.kind == OrgAlert.Kind.REVIEW_OVERDUE
    assert "1 reply in the Review queue" in alert.message
    assert "1 reply in the Review queue" in owner_client.get("/conversations/").content.decode()


def test_the_alert_counts_friday_to_monday_as_one_business_day(member, org):
    friday_5pm = datetime(2026, 3, 6, 17, 0, tzinfo=NEW_YORK)
    reply_from(member, "I want to cancel my membership", at=friday_5pm)

    consent.review_deadlines_apply(now=friday_5pm + timedelta(days=2, hours=23))  # Monday 4pm
    assert not OrgAlert.objects.filter(resolved_at__isnull=True).exists()


def test_the_alert_closes_when_the_last_waiting_item_is_decided(teammate_client, member, org):
    item = reply_from(
        member, "I want to cancel my membership", at=timezone.now() - timedelta(days=5)
    )
    consent.review_deadlines_apply()
    assert OrgAlert.objects.filter(resolved_at__isnull=True).exists()

    decide(teammate_client, item, "not_opt_out")

    assert not OrgAlert.objects.filter(resolved_at__isnull=True).exists()


# Staff activity -----------------------------------------------------------------------------------


def test_the_staff_activity_report_lists_review_decisions(
    owner_client, teammate_client, member, org
):
    first = reply_from(member, "I want to cancel my membership")
    decide(teammate_client, first, "not_opt_out", note="Asked about billing")
    second = reply_from(member, "stop sending me class times, just billing")
    decide(teammate_client, second, "opt_out")

    page = owner_client.get("/reports/staff/?period=7").content.decode()

    assert "Opt-out request dismissed" in page
    assert "Asked about billing" in page
    assert "Opted out" in page
    assert page.count("teammate") >= 2
