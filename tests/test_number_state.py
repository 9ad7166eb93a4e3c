"""A number's state within an organization (SPEC §2) and what each category of the Twilio error
catalogue does to it (SPEC §4): every transition, what it refuses, and the audit event each one
leaves (who or what caused it, before and after, the note and the page). Staff see the reason of
an error, never a bare code."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from contacts.models import Contact
from deliverability import catalogue, eligibility, outcomes, services
from deliverability.catalogue import Category
from deliverability.lookups import normalize
from deliverability.models import (
    AuditEvent,
    NumberFacts,
    NumberState,
    OptIn,
    OptOutReason,
    OrgAlert,
    StateChangeRefused,
)
from tests.factories import make_contact, make_message

PHONE = "+12125550123"
LANDLINE = "+12125550150"  # the simulator's plan: landline (SPEC §9)
MOBILE = "+12125550120"  # the simulator's plan: an ordinary mobile
SENDER = "+16175550001"
INVALID_CODES = catalogue.codes_in(Category.INVALID)
OPT_OUT_REASONS = list(OptOutReason.values)


def state(org, phone=PHONE):
    """The number's state in `org`; blank (and unsaved) when nothing was ever recorded."""
    return NumberState.objects.of(org=org, phone=phone)


def facts(phone=PHONE):
    return NumberFacts.objects.filter(phone=phone).first()


def audits(org, phone=PHONE):
    return list(AuditEvent.objects.filter(organization=org, phone=phone).order_by("id"))


def last_audit(org, phone=PHONE):
    return audits(org, phone)[-1]


def untouched(org, phone=PHONE):
    """Nothing a user could notice changed about the number."""
    current = state(org, phone)
    known = facts(phone)
    return (
        not current.is_invalid
        and not current.is_opted_out
        and current.error_streak == 0
        and (known is None or (known.errors_since_heartbeat, known.error_count) == (0, 0))
        and not AuditEvent.objects.filter(phone=phone).exists()
        and eligibility.check_number(org=org, phone=phone) is None
    )


def opt_out(org, reason, owner, phone=PHONE):
    """An opt-out with `reason`, made the way that reason is made in the product."""
    if reason == OptOutReason.STAFF:
        return NumberState.objects.of(org=org, phone=phone).opt_out(reason=reason, by=owner)
    return NumberState.objects.of(org=org, phone=phone).opt_out(
        reason=reason, cause=f"test {reason}"
    )


def never_called(phone):
    raise AssertionError("the lookup must not run for a refused re-check")


# Invalid flag: manual --------------------------------------------------------------------------


def test_staff_mark_a_number_invalid_and_the_audit_names_them(org, teammate):
    contact = make_contact(org, PHONE)
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(
        by=teammate,
        note="Member says it is not theirs",
        source_page="conversations",
        contact=contact,
    )
    flagged = state(org)
    assert (flagged.invalid_source, flagged.invalid_code, flagged.invalid_reason) == (
        "manual",
        "",
        "",
    )
    assert flagged.invalid_at is not None
    event = last_audit(org)
    assert event.action == AuditEvent.Action.MARK_INVALID
    assert event.actor == teammate and event.system_cause == ""
    assert event.actor_label == "teammate"
    assert event.note == "Member says it is not theirs"
    assert event.source_page == "conversations"
    assert event.contact == contact
    assert event.before["invalid_source"] == "" and event.after["invalid_source"] == "manual"


def test_a_manual_flag_can_be_marked_valid_and_that_is_audited(org, teammate, owner):
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=teammate)
    NumberState.objects.of(org=org, phone=PHONE).mark_valid(
        by=owner, note="Confirmed at the desk", source_page="failed"
    )
    assert not state(org).is_invalid
    assert state(org).invalid_at is None
    event = last_audit(org)
    assert event.action == AuditEvent.Action.MARK_VALID
    assert (event.actor, event.note, event.source_page) == (
        owner,
        "Confirmed at the desk",
        "failed",
    )
    assert event.before["invalid_source"] == "manual" and event.after["invalid_source"] == ""
    assert eligibility.check_number(org=org, phone=PHONE) is None


def test_marking_an_invalid_number_invalid_again_is_refused(org, teammate):
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=teammate)
    with pytest.raises(StateChangeRefused, match="already marked as invalid"):
        NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=teammate)
    assert len(audits(org)) == 1


def test_marking_a_number_that_is_not_invalid_valid_is_refused(org, teammate):
    with pytest.raises(StateChangeRefused, match="not marked as invalid"):
        NumberState.objects.of(org=org, phone=PHONE).mark_valid(by=teammate)
    assert audits(org) == []


def test_a_contact_without_a_usable_number_cannot_be_flagged(org, teammate):
    with pytest.raises(StateChangeRefused, match="no valid phone number"):
        NumberState.objects.of(org=org, phone="").mark_invalid(by=teammate)
    assert not NumberState.objects.exists()


# Invalid flag: automatic -----------------------------------------------------------------------


@pytest.mark.parametrize("code", INVALID_CODES)
def test_each_invalid_code_flags_the_number_automatically_with_twilio_as_the_cause(org, code):
    info = outcomes.error_apply(org=org, phone=PHONE, code=code)
    flagged = state(org)
    assert flagged.invalid_source == "automatic"
    assert flagged.invalid_code == str(code)
    assert flagged.invalid_reason == info.reason == catalogue.ERRORS[code][1]
    event = last_audit(org)
    assert event.action == AuditEvent.Action.AUTO_INVALID
    assert event.actor is None
    assert event.system_cause == f"Twilio {code}"
    assert event.actor_label == f"System (Twilio {code})"
    assert event.before["invalid_source"] == ""
    assert event.after["invalid_code"] == str(code)
    assert event.after["invalid_reason"] == catalogue.ERRORS[code][1]
    assert eligibility.check_number(org=org, phone=PHONE) == "marked_invalid"


@pytest.mark.parametrize("code", INVALID_CODES)
def test_an_automatic_flag_cannot_be_marked_valid_and_staff_are_told_what_to_do(
    org, teammate, code
):
    outcomes.error_apply(org=org, phone=PHONE, code=code)
    with pytest.raises(StateChangeRefused) as refused:
        NumberState.objects.of(org=org, phone=PHONE).mark_valid(by=teammate)
    assert "Update the phone number" in str(refused.value)
    assert catalogue.ERRORS[code][1] in str(refused.value)  # the reason, never a bare code
    assert state(org).invalid_source == "automatic"
    assert [e.action for e in audits(org)] == [AuditEvent.Action.AUTO_INVALID]


def test_a_failed_send_turns_a_manual_flag_into_an_automatic_one(org, teammate):
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=teammate)
    outcomes.error_apply(org=org, phone=PHONE, code=21614)
    flagged = state(org)
    assert (flagged.invalid_source, flagged.invalid_code) == ("automatic", "21614")
    assert last_audit(org).before["invalid_source"] == "manual"
    with pytest.raises(StateChangeRefused, match="Update the phone number"):
        NumberState.objects.of(org=org, phone=PHONE).mark_valid(by=teammate)


def test_a_second_invalid_code_keeps_the_first_automatic_flag(org):
    outcomes.error_apply(org=org, phone=PHONE, code=21614)
    outcomes.error_apply(org=org, phone=PHONE, code=30005)
    assert state(org).invalid_code == "21614"
    assert len(audits(org)) == 1


# Opt-out ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", OPT_OUT_REASONS)
def test_each_opt_out_reason_is_recorded_and_audited(org, owner, reason):
    opt_out(org, reason, owner)
    opted = state(org)
    assert opted.opt_out_reason == reason
    assert opted.opted_out_at is not None
    event = last_audit(org)
    assert event.action == AuditEvent.Action.OPT_OUT
    assert event.before["opt_out_reason"] == "" and event.after["opt_out_reason"] == reason
    if reason == OptOutReason.STAFF:
        assert (event.actor, event.system_cause) == (owner, "")
    else:
        assert (event.actor, event.system_cause) == (None, f"test {reason}")
    assert eligibility.check_number(org=org, phone=PHONE) == "opted_out"


def test_a_staff_opt_out_keeps_the_note_and_the_page(org, teammate):
    NumberState.objects.of(org=org, phone=PHONE).opt_out(
        reason=OptOutReason.STAFF,
        by=teammate,
        note="Asked at the front desk",
        source_page="contact",
    )
    event = last_audit(org)
    assert (event.actor, event.note, event.source_page) == (
        teammate,
        "Asked at the front desk",
        "contact",
    )


def test_a_staff_opt_out_needs_the_staff_member(org):
    with pytest.raises(ValueError, match="staff user"):
        NumberState.objects.of(org=org, phone=PHONE).opt_out(reason=OptOutReason.STAFF)
    assert audits(org) == []


def test_an_unknown_opt_out_reason_is_rejected(org, owner):
    with pytest.raises(ValueError, match="unknown opt-out reason"):
        NumberState.objects.of(org=org, phone=PHONE).opt_out(reason="bored", by=owner)


def test_a_later_opt_out_keeps_the_first_reason_and_date(org, owner):
    NumberState.objects.of(org=org, phone=PHONE).opt_out(
        reason="stop_keyword", cause="inbound STOP"
    )
    first = state(org)
    NumberState.objects.of(org=org, phone=PHONE).opt_out(
        reason="deactivated", cause="deactivation list"
    )
    assert (state(org).opt_out_reason, state(org).opted_out_at) == (
        "stop_keyword",
        first.opted_out_at,
    )
    with pytest.raises(StateChangeRefused, match="already opted out"):
        NumberState.objects.of(org=org, phone=PHONE).opt_out(reason="staff", by=owner)
    assert len(audits(org)) == 1


def test_21610_opts_the_number_out_as_a_carrier_stop(org):
    outcomes.error_apply(org=org, phone=PHONE, code=21610)
    opted = state(org)
    assert opted.opt_out_reason == "carrier_stop"
    assert not opted.is_invalid
    event = AuditEvent.objects.get()
    assert (event.action, event.system_cause) == ("opt_out", "Twilio 21610")
    assert eligibility.check_number(org=org, phone=PHONE) == "opted_out"
    outcomes.error_apply(org=org, phone=PHONE, code=21610)  # the next send fails the same way
    assert AuditEvent.objects.count() == 1


# Opt-in ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", OPT_OUT_REASONS)
def test_a_start_keyword_from_the_number_lifts_every_opt_out(org, owner, reason):
    opt_out(org, reason, owner)
    NumberState.objects.of(org=org, phone=PHONE).opt_in(via=OptIn.START, cause="inbound START")
    lifted = state(org)
    assert (lifted.opt_out_reason, lifted.opted_out_at) == ("", None)
    event = last_audit(org)
    assert event.action == AuditEvent.Action.OPT_IN
    assert (event.actor, event.system_cause) == (None, "inbound START")
    assert event.before["opt_out_reason"] == reason and event.after["opt_out_reason"] == ""
    assert eligibility.check_number(org=org, phone=PHONE) is None


def test_yes_or_unstop_lift_every_opt_out_but_a_wrong_or_reassigned_number(org, owner):
    # A wrong or reassigned number is someone else's now: only START from it is consent.
    kept = {"wrong_number", "reassigned"}
    for reason in OPT_OUT_REASONS:
        opt_out(org, reason, owner)
        NumberState.objects.of(org=org, phone=PHONE).opt_in(via=OptIn.KEYWORD, cause="inbound YES")
        assert state(org).opt_out_reason == (reason if reason in kept else "")
        NumberState.objects.of(org=org, phone=PHONE).opt_in(via=OptIn.START, cause="inbound START")


@pytest.mark.parametrize(
    "reason, lifted",
    [("stop_keyword", True), ("carrier_stop", False), ("deactivated", False), ("staff", False)],
)
def test_any_inbound_message_lifts_only_a_stop_keyword_opt_out(org, owner, reason, lifted):
    opt_out(org, reason, owner)
    NumberState.objects.of(org=org, phone=PHONE).opt_in(
        via=OptIn.ANY_INBOUND, cause="inbound message"
    )
    assert state(org).is_opted_out is not lifted
    actions = [e.action for e in audits(org)]
    assert actions == (["opt_out", "opt_in"] if lifted else ["opt_out"])


@pytest.mark.parametrize("reason", ["stop_keyword", "carrier_stop", "deactivated"])
def test_staff_cannot_lift_an_opt_out_the_contact_or_carrier_caused(org, owner, reason):
    opt_out(org, reason, owner)
    with pytest.raises(StateChangeRefused, match="Only the contact can lift") as refused:
        NumberState.objects.of(org=org, phone=PHONE).opt_in(
            via=OptIn.STAFF, by=owner, note="They asked us to"
        )
    assert "START" in str(refused.value)
    assert state(org).opt_out_reason == reason
    assert len(audits(org)) == 1


@pytest.mark.parametrize("note", ["", "   "])
def test_staff_lifting_a_staff_opt_out_must_say_why(org, owner, note):
    opt_out(org, OptOutReason.STAFF, owner)
    with pytest.raises(StateChangeRefused, match="note is required"):
        NumberState.objects.of(org=org, phone=PHONE).opt_in(via=OptIn.STAFF, by=owner, note=note)
    assert state(org).is_opted_out


def test_staff_lift_a_staff_opt_out_with_a_note_and_it_is_audited(org, owner):
    opt_out(org, OptOutReason.STAFF, owner)
    NumberState.objects.of(org=org, phone=PHONE).opt_in(
        via=OptIn.STAFF, by=owner, note="Opted out by mistake", source_page="contact"
    )
    assert not state(org).is_opted_out
    event = last_audit(org)
    assert (event.action, event.actor, event.note, event.source_page) == (
        "opt_in",
        owner,
        "Opted out by mistake",
        "contact",
    )


def test_staff_opting_in_a_subscribed_number_is_refused(org, owner):
    with pytest.raises(StateChangeRefused, match="not opted out"):
        NumberState.objects.of(org=org, phone=PHONE).opt_in(
            via=OptIn.STAFF, by=owner, note="why not"
        )


def test_a_start_from_a_subscribed_number_changes_nothing(org):
    NumberState.objects.of(org=org, phone=PHONE).opt_in(via=OptIn.KEYWORD, cause="inbound START")
    assert audits(org) == []


# Pause -----------------------------------------------------------------------------------------


def test_a_pause_of_30_days_is_accepted_and_audited(org, teammate):
    until = timezone.now() + timedelta(days=30)
    NumberState.objects.of(org=org, phone=PHONE).pause(
        until=until, by=teammate, note="Travelling", source_page="contact"
    )
    paused = state(org)
    assert paused.paused_until == until
    assert not paused.is_opted_out  # still subscribed
    event = last_audit(org)
    assert (event.action, event.actor, event.note, event.source_page) == (
        "pause",
        teammate,
        "Travelling",
        "contact",
    )
    assert event.before["paused_until"] is None
    assert event.after["paused_until"] == until.isoformat()
    assert eligibility.check_number(org=org, phone=PHONE) == "paused"


def test_a_pause_longer_than_30_days_is_refused(org, teammate):
    until = timezone.now() + timedelta(days=30, minutes=1)
    with pytest.raises(StateChangeRefused, match="at most 30 days"):
        NumberState.objects.of(org=org, phone=PHONE).pause(until=until, by=teammate)
    assert NumberState.objects.of(org=org, phone=PHONE).paused_until is None
    assert audits(org) == []


@pytest.mark.parametrize("ago", [timedelta(minutes=1), timedelta(days=3)])
def test_a_pause_ending_in_the_past_is_refused(org, teammate, ago):
    with pytest.raises(StateChangeRefused, match="future"):
        NumberState.objects.of(org=org, phone=PHONE).pause(until=timezone.now() - ago, by=teammate)
    assert audits(org) == []


def test_an_opted_out_number_cannot_be_paused(org, owner):
    opt_out(org, OptOutReason.STOP_KEYWORD, owner)
    with pytest.raises(StateChangeRefused, match="opted out"):
        NumberState.objects.of(org=org, phone=PHONE).pause(
            until=timezone.now() + timedelta(days=1), by=owner
        )


def test_resume_ends_a_pause_and_is_audited(org, teammate):
    until = timezone.now() + timedelta(days=5)
    NumberState.objects.of(org=org, phone=PHONE).pause(until=until, by=teammate)
    NumberState.objects.of(org=org, phone=PHONE).resume(by=teammate, note="Back early")
    assert state(org).paused_until is None
    event = last_audit(org)
    assert (event.action, event.actor, event.note) == ("resume", teammate, "Back early")
    assert event.before["paused_until"] == until.isoformat()
    assert event.after["paused_until"] is None
    assert eligibility.check_number(org=org, phone=PHONE) is None


def test_resuming_a_number_that_is_not_paused_is_refused(org, teammate):
    with pytest.raises(StateChangeRefused, match="not paused"):
        NumberState.objects.of(org=org, phone=PHONE).resume(by=teammate)


def test_expired_pauses_end_by_themselves_and_only_those(org, other_org, teammate):
    now = timezone.now()
    soon, later, unpaused = "+12125550131", "+12125550132", "+12125550133"
    NumberState.objects.of(org=org, phone=soon).pause(until=now + timedelta(hours=1), by=teammate)
    NumberState.objects.of(org=org, phone=later).pause(until=now + timedelta(days=10), by=teammate)
    NumberState.objects.of(org=other_org, phone=soon).pause(
        until=now + timedelta(days=2), by=teammate
    )
    NumberState.objects.of(org=org, phone=unpaused).mark_invalid(by=teammate)

    assert NumberState.objects.end_expired_pauses(now=now) == 0
    assert NumberState.objects.end_expired_pauses(now=now + timedelta(hours=2)) == 1

    assert state(org, soon).paused_until is None
    assert state(org, later).paused_until == now + timedelta(days=10)
    assert state(other_org, soon).paused_until == now + timedelta(days=2)
    event = last_audit(org, soon)
    assert (event.action, event.actor, event.system_cause) == ("pause_ended", None, "pause ended")
    assert event.before["paused_until"] == (now + timedelta(hours=1)).isoformat()
    assert event.after["paused_until"] is None
    ended = AuditEvent.objects.filter(action=AuditEvent.Action.PAUSE_ENDED)
    assert list(ended.values_list("organization", "phone")) == [(org.pk, soon)]
    assert NumberState.objects.end_expired_pauses(now=now + timedelta(hours=2)) == 0  # once only


def test_an_opt_out_during_a_pause_ends_the_pause(org, teammate):
    until = timezone.now() + timedelta(days=7)
    NumberState.objects.of(org=org, phone=PHONE).pause(until=until, by=teammate)
    NumberState.objects.of(org=org, phone=PHONE).opt_out(
        reason="stop_keyword", cause="inbound STOP"
    )
    opted = state(org)
    assert (opted.opt_out_reason, opted.paused_until) == ("stop_keyword", None)
    event = last_audit(org)
    assert event.before["paused_until"] == until.isoformat()
    assert event.after["paused_until"] is None
    # Lifting the opt-out does not bring the old pause back.
    NumberState.objects.of(org=org, phone=PHONE).opt_in(via=OptIn.KEYWORD, cause="inbound START")
    assert eligibility.check_number(org=org, phone=PHONE) is None


def test_a_deactivation_during_a_pause_turns_it_into_an_opt_out(org, teammate):
    contact = make_contact(org, PHONE)
    until = timezone.now() + timedelta(days=7)
    NumberState.objects.of(org=org, phone=PHONE).pause(until=until, by=teammate)
    assert services.deactivation_apply(phones=[PHONE], list_date=date(2026, 3, 2)) == 1
    deactivated = state(org)
    assert (deactivated.opt_out_reason, deactivated.paused_until) == ("deactivated", None)
    event = last_audit(org)
    assert (event.action, event.actor, event.system_cause) == (
        "opt_out",
        None,
        "deactivation list 2026-03-02",
    )
    assert event.before["paused_until"] == until.isoformat()
    # Once the pause would have ended, the number is still opted out.
    later = until + timedelta(days=1)
    assert eligibility.check_number(org=org, phone=contact.phone_e164, now=later) == "opted_out"
    assert NumberState.objects.end_expired_pauses(now=later) == 0


# Re-check --------------------------------------------------------------------------------------


def flag(org, code, phone=PHONE):
    """An automatic flag of `code` the way the product makes it."""
    if code == catalogue.LOOKUP:
        make_contact(org, phone)
        services.facts_record_lookup(phone=phone, result=normalize("landline"))
    elif code == 30006:
        # 30006 is itself an unreachable code; a flag carrying it comes from the system.
        NumberState.objects.of(org=org, phone=phone).flag_automatically(
            code=30006, reason=catalogue.ERRORS[30006][1], cause="Twilio 30006"
        )
    else:
        outcomes.error_apply(org=org, phone=phone, code=code)
    assert state(org, phone).invalid_source == "automatic"


@pytest.mark.parametrize("code", [21614, 30006, catalogue.LOOKUP])
def test_a_recheck_saying_sms_capable_clears_a_flag_a_lookup_can_disprove(org, teammate, code):
    flag(org, code)
    flagged = state(org)
    services.number_recheck(
        org=org,
        phone=PHONE,
        by=teammate,
        lookup=lambda phone: normalize("mobile", "Verizon"),
        note="Member says it is a cell now",
        source_page="conversations",
    )
    assert not state(org).is_invalid
    event = last_audit(org)
    assert event.action == AuditEvent.Action.AUTO_VALID
    assert (event.actor, event.note, event.source_page) == (
        teammate,
        "Member says it is a cell now",
        "conversations",
    )
    assert event.before["invalid_code"] == flagged.invalid_code
    assert event.after["invalid_source"] == ""
    facts = NumberFacts.objects.get(phone=PHONE)
    assert (facts.line_type, facts.carrier_name) == ("mobile", "Verizon")
    assert eligibility.check_number(org=org, phone=PHONE) is None


@pytest.mark.parametrize("line_type", ["landline", "pager", "voicemail", "unknown"])
@pytest.mark.parametrize("code", [21614, 30006, catalogue.LOOKUP])
def test_a_recheck_that_does_not_prove_sms_keeps_the_flag_and_is_audited(
    org, teammate, code, line_type
):
    flag(org, code)
    before = state(org)
    services.number_recheck(
        org=org, phone=PHONE, by=teammate, lookup=lambda phone: normalize(line_type)
    )
    after = state(org)
    assert (after.invalid_source, after.invalid_code) == ("automatic", before.invalid_code)
    event = last_audit(org)
    assert (event.action, event.actor) == (AuditEvent.Action.RECHECK, teammate)
    assert event.before == event.after


@pytest.mark.parametrize("code", [21211, 21265, 21268, 30005])
def test_flags_a_lookup_cannot_disprove_cannot_be_rechecked(org, teammate, code):
    outcomes.error_apply(org=org, phone=PHONE, code=code)
    with pytest.raises(StateChangeRefused, match="Update the phone number"):
        services.number_recheck(org=org, phone=PHONE, by=teammate, lookup=never_called)
    assert state(org).invalid_code == str(code)
    assert [e.action for e in audits(org)] == [AuditEvent.Action.AUTO_INVALID]


def test_a_manual_flag_or_no_flag_is_not_rechecked(org, teammate):
    with pytest.raises(StateChangeRefused):
        services.number_recheck(org=org, phone=PHONE, by=teammate, lookup=never_called)
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=teammate)
    with pytest.raises(StateChangeRefused):
        services.number_recheck(org=org, phone=PHONE, by=teammate, lookup=never_called)
    assert state(org).invalid_source == "manual"


# A new phone number ----------------------------------------------------------------------------


def test_a_new_number_frees_the_contact_and_the_old_number_keeps_its_flag(
    org, teammate, django_capture_on_commit_callbacks
):
    contact = make_contact(org, PHONE)
    conversation_messages = [make_message(contact), make_message(contact)]
    outcomes.error_apply(org=org, phone=PHONE, code=21614)
    contacts = Contact.objects.filter(pk=contact.pk)
    assert eligibility.check_contacts(contacts, org=org).get().skip_reason == "marked_invalid"

    with django_capture_on_commit_callbacks(execute=True):
        services.contact_change_phone(
            contact=contact,
            raw="(212) 555-0140",
            by=teammate,
            note="New cell",
            source_page="contact",
        )

    contact.refresh_from_db()
    assert (contact.phone_raw, contact.phone_e164) == ("(212) 555-0140", "+12125550140")
    assert state(org).invalid_code == "21614"  # the flag belongs to the old number
    assert not NumberState.objects.of(org=org, phone="+12125550140").is_invalid
    assert eligibility.check_contacts(contacts, org=org).get().skip_reason is None
    assert eligibility.check_number(org=org, phone=contact.phone_e164) is None
    # The conversation and its history stay with the person.
    assert contact.conversation.pk == conversation_messages[0].conversation_id
    assert set(contact.conversation.messages.values_list("pk", flat=True)) == {
        m.pk for m in conversation_messages
    }
    event = AuditEvent.objects.filter(action=AuditEvent.Action.PHONE_CHANGED).get()
    assert (event.actor, event.contact, event.note, event.source_page) == (
        teammate,
        contact,
        "New cell",
        "contact",
    )
    assert event.before == {"phone_raw": PHONE, "phone_e164": PHONE}
    assert event.after == {"phone_raw": "(212) 555-0140", "phone_e164": "+12125550140"}


def test_a_new_number_brings_the_state_it_already_has_in_the_org(org, owner, teammate):
    contact = make_contact(org, PHONE)
    taken = "+12125550141"
    opt_out(org, OptOutReason.STOP_KEYWORD, owner, phone=taken)
    services.contact_change_phone(contact=contact, raw=taken, by=teammate)
    contacts = Contact.objects.filter(pk=contact.pk)
    assert eligibility.check_contacts(contacts, org=org).get().skip_reason == "opted_out"


def test_a_new_number_that_turns_out_to_be_a_landline_is_flagged_by_its_lookup(
    org, teammate, django_capture_on_commit_callbacks
):
    contact = make_contact(org, PHONE)
    with django_capture_on_commit_callbacks(execute=True):
        services.contact_change_phone(contact=contact, raw="212-555-0150", by=teammate)
    landline = state(org, "+12125550150")
    assert (landline.invalid_source, landline.invalid_code, landline.invalid_reason) == (
        "automatic",
        "lookup",
        "Landline; not SMS-capable",
    )
    assert last_audit(org, "+12125550150").system_cause == "line-type lookup"
    contacts = Contact.objects.filter(pk=contact.pk)
    assert eligibility.check_contacts(contacts, org=org).get().skip_reason == "marked_invalid"


def test_a_new_number_that_does_not_parse_is_kept_as_entered_and_not_sent_to(org, teammate):
    contact = make_contact(org, PHONE)
    services.contact_change_phone(contact=contact, raw="n/a", by=teammate)
    contact.refresh_from_db()
    assert (contact.phone_raw, contact.phone_e164, contact.phone_status) == (
        "n/a",
        "",
        "invalid_number",
    )
    contacts = Contact.objects.filter(pk=contact.pk)
    assert eligibility.check_contacts(contacts, org=org).get().skip_reason == "invalid_number"


# Errors counted against the number (unreachable and unknown codes) -------------------------------


@pytest.mark.parametrize("code", catalogue.codes_in(Category.UNREACHABLE))
def test_an_unreachable_code_counts_one_error_in_the_org_and_across_orgs(org, code):
    outcomes.error_apply(org=org, phone=PHONE, code=code)
    counted = state(org)
    assert counted.error_streak == 1
    assert not counted.is_invalid and not counted.is_opted_out
    known = facts()
    assert (known.errors_since_heartbeat, known.error_count, known.last_error_code) == (
        1,
        1,
        str(code),
    )
    outcomes.error_apply(org=org, phone=PHONE, code=code)
    assert state(org).error_streak == 2
    assert facts().errors_since_heartbeat == 2
    assert not AuditEvent.objects.exists()  # counting is not a state change


@pytest.mark.parametrize("code", [30003, 30008, 21612])
def test_unreachable_codes_other_than_30006_ask_for_no_lookup(
    org, code, django_capture_on_commit_callbacks
):
    make_contact(org, LANDLINE)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        outcomes.error_apply(org=org, phone=LANDLINE, code=code)
    assert callbacks == []
    assert facts(LANDLINE).looked_up_at is None
    assert not state(org, LANDLINE).is_invalid


def test_30006_on_a_landline_flags_the_number_after_a_fresh_lookup(
    org, django_capture_on_commit_callbacks
):
    contact = make_contact(org, LANDLINE)
    with django_capture_on_commit_callbacks(execute=True):
        outcomes.error_apply(org=org, phone=LANDLINE, code=30006)

    flagged = state(org, LANDLINE)
    assert (flagged.invalid_source, flagged.invalid_code, flagged.invalid_reason) == (
        "automatic",
        "lookup",
        "Landline; not SMS-capable",
    )
    assert flagged.error_streak == 1  # the error itself still counts
    known = facts(LANDLINE)
    assert (known.line_type, known.errors_since_heartbeat) == ("landline", 1)
    assert known.looked_up_at is not None
    event = AuditEvent.objects.get(phone=LANDLINE)
    assert (event.action, event.actor, event.system_cause) == (
        "auto_invalid",
        None,
        "line-type lookup",
    )
    contacts = Contact.objects.filter(pk=contact.pk)
    assert eligibility.check_contacts(contacts, org=org).get().skip_reason == "marked_invalid"
    # A lookup can disprove this flag, so staff may re-check it (but not mark it valid).
    assert flagged.may_recheck


def test_30006_on_a_landline_no_contact_holds_skips_it_as_a_landline(
    org, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        outcomes.error_apply(org=org, phone=LANDLINE, code=30006)
    assert not state(org, LANDLINE).is_invalid
    assert facts(LANDLINE).line_type == "landline"
    assert eligibility.check_number(org=org, phone=LANDLINE) == "landline"


def test_30006_on_a_mobile_only_counts_the_error(org, django_capture_on_commit_callbacks):
    make_contact(org, MOBILE)
    with django_capture_on_commit_callbacks(execute=True):
        outcomes.error_apply(org=org, phone=MOBILE, code=30006)
    assert not state(org, MOBILE).is_invalid
    assert facts(MOBILE).line_type == "mobile"
    assert state(org, MOBILE).error_streak == 1
    assert eligibility.check_number(org=org, phone=MOBILE) is None


@pytest.mark.parametrize("code", [12345, "99999", 30999])
def test_an_unknown_code_counts_as_unreachable_with_a_readable_reason(org, code):
    info = outcomes.error_apply(org=org, phone=PHONE, code=code)
    assert info.category == Category.UNREACHABLE
    assert info.reason == f"Unknown error (code {code})"
    assert state(org).error_streak == 1
    assert not state(org).is_invalid and not state(org).is_opted_out
    assert facts().errors_since_heartbeat == 1
    assert facts().last_error_code == str(code)


def test_an_unknown_code_counts_toward_the_error_rules_like_any_unreachable_one(org):
    for _ in range(4):
        outcomes.error_apply(org=org, phone=PHONE, code=30003)
    assert eligibility.check_number(org=org, phone=PHONE) is None
    outcomes.error_apply(org=org, phone=PHONE, code=31999)
    assert eligibility.check_number(org=org, phone=PHONE) == "recent_errors"


def test_an_attempt_reported_late_does_not_move_the_last_attempt_back(org):
    now = timezone.now()
    outcomes.record_attempts(org=org, phones=[PHONE], at=now)
    outcomes.record_attempts(org=org, phones=[PHONE], at=now - timedelta(days=3))
    assert state(org).last_attempt_at == now


# Errors that leave the number alone (content, throughput, sender) --------------------------------


@pytest.mark.parametrize(
    "code", catalogue.codes_in(Category.CONTENT) + catalogue.codes_in(Category.THROUGHPUT)
)
def test_content_and_throughput_errors_leave_the_number_alone(org, code):
    info = outcomes.error_apply(org=org, phone=PHONE, code=code, sender_ref=SENDER)
    assert info.reason == catalogue.ERRORS[code][1]
    assert untouched(org)
    assert not NumberState.objects.exists()
    assert not OrgAlert.objects.exists()


@pytest.mark.parametrize("code", catalogue.codes_in(Category.SENDER))
def test_a_sender_error_raises_an_org_alert_and_leaves_the_number_alone(org, code):
    outcomes.error_apply(org=org, phone=PHONE, code=code, sender_ref=SENDER)
    alert = OrgAlert.objects.get()
    assert (alert.organization, alert.kind, alert.sender_ref, alert.error_code) == (
        org,
        OrgAlert.Kind.SENDER_ERROR,
        SENDER,
        str(code),
    )
    assert alert.occurrences == 1
    assert catalogue.ERRORS[code][1] in alert.message and SENDER in alert.message
    assert untouched(org)


def test_a_repeated_sender_error_counts_occurrences_on_one_alert(org, other_org):
    for _ in range(3):
        outcomes.error_apply(org=org, phone=PHONE, code=30034, sender_ref=SENDER)
    alert = OrgAlert.objects.get()
    assert alert.occurrences == 3
    outcomes.error_apply(org=org, phone=PHONE, code=30018, sender_ref=SENDER)
    outcomes.error_apply(org=other_org, phone=PHONE, code=30034, sender_ref="+16175550002")
    assert OrgAlert.objects.count() == 3
    assert OrgAlert.objects.get(pk=alert.pk).occurrences == 3


def test_a_sender_error_after_the_alert_was_resolved_opens_a_new_one(org, owner):
    outcomes.error_apply(org=org, phone=PHONE, code=30034, sender_ref=SENDER)
    OrgAlert.objects.get().resolve(by=owner)
    outcomes.error_apply(org=org, phone=PHONE, code=30034, sender_ref=SENDER)
    assert OrgAlert.objects.count() == 2
    assert OrgAlert.objects.filter(resolved_at__isnull=True).get().occurrences == 1


# Per organization ------------------------------------------------------------------------------


def test_states_belong_to_one_organization(org, other_org, owner, teammate):
    make_contact(other_org, PHONE)
    outcomes.error_apply(org=org, phone=PHONE, code=21614)
    NumberState.objects.of(org=org, phone="+12125550142").pause(
        until=timezone.now() + timedelta(days=2), by=teammate
    )
    opt_out(org, OptOutReason.STAFF, owner, phone="+12125550143")
    outcomes.error_apply(org=org, phone="+12125550144", code=21610)
    NumberState.objects.of(org=org, phone="+12125550145").mark_invalid(by=teammate)
    for phone in (PHONE, "+12125550142", "+12125550143", "+12125550144", "+12125550145"):
        elsewhere = NumberState.objects.of(org=other_org, phone=phone)
        assert not elsewhere.is_invalid
        assert not elsewhere.is_opted_out
        assert elsewhere.paused_until is None
        assert eligibility.check_number(org=other_org, phone=phone) is None
    assert not AuditEvent.objects.filter(organization=other_org).exists()


def test_an_opt_out_in_one_org_is_lifted_only_there(org, other_org, owner):
    for target in (org, other_org):
        NumberState.objects.of(org=target, phone=PHONE).opt_out(reason="stop_keyword", cause="STOP")
    NumberState.objects.of(org=org, phone=PHONE).opt_in(via=OptIn.KEYWORD, cause="inbound START")
    assert not state(org).is_opted_out
    assert state(other_org).opt_out_reason == "stop_keyword"
