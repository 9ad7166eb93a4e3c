"""Every change of a number's state (SPEC §2) and its audit event; the catalogue's effects;
lookups under the simulator's plan; deactivation lists. (Replies: tests/test_replies.py.)"""

from datetime import date, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from deliverability import checks, services
from deliverability.deactivations import import_deactivations, parse_list
from deliverability.lookups import lookup_line_type, normalize
from deliverability.models import AuditEvent, NumberState, OptOutReason, OrgAlert
from deliverability.services import OptIn, StateChangeRefused
from tests.factories import make_contact

PHONE = "+12125550123"


def state(org, phone=PHONE):
    return NumberState.objects.get(organization=org, phone=phone)


def last_audit(org):
    return AuditEvent.objects.filter(organization=org).order_by("-id").first()


# Invalid flag -----------------------------------------------------------------------------------


def test_mark_invalid_and_back_is_audited_with_the_user_and_page(org, teammate):
    services.number_mark_invalid(
        org=org, phone=PHONE, by=teammate, note="wrong number", source_page="conversations"
    )
    event = last_audit(org)
    assert (event.action, event.actor, event.note, event.source_page) == (
        "mark_invalid",
        teammate,
        "wrong number",
        "conversations",
    )
    assert event.before["invalid_source"] == "" and event.after["invalid_source"] == "manual"
    services.number_mark_valid(org=org, phone=PHONE, by=teammate)
    assert not state(org).is_invalid
    assert last_audit(org).action == "mark_valid"


@pytest.mark.parametrize("code", [21211, 21614, 21265, 21268, 30005])
def test_invalid_codes_flag_the_number_automatically(org, code):
    services.error_apply(org=org, phone=PHONE, code=code)
    flagged = state(org)
    assert (flagged.invalid_source, flagged.invalid_code) == ("automatic", str(code))
    assert last_audit(org).system_cause == f"Twilio {code}"


def test_an_automatic_flag_cannot_be_marked_valid(org, teammate):
    services.error_apply(org=org, phone=PHONE, code=21614)
    with pytest.raises(StateChangeRefused, match="Update the phone number"):
        services.number_mark_valid(org=org, phone=PHONE, by=teammate)
    assert state(org).invalid_source == "automatic"


def test_states_belong_to_one_organization(org, other_org, teammate):
    services.number_mark_invalid(org=org, phone=PHONE, by=teammate)
    assert services.number_state(org=other_org, phone=PHONE).is_invalid is False


# Opt-out and opt-in -----------------------------------------------------------------------------


def test_carrier_stop_opts_out(org):
    services.error_apply(org=org, phone=PHONE, code=21610)
    assert state(org).opt_out_reason == "carrier_stop"


@pytest.mark.parametrize("reason", ["stop_keyword", "carrier_stop", "deactivated", "staff"])
def test_start_from_the_number_lifts_every_reason(org, owner, reason):
    services.number_opt_out(
        org=org, phone=PHONE, reason=reason, by=owner if reason == "staff" else None
    )
    services.number_opt_in(org=org, phone=PHONE, via=OptIn.KEYWORD, cause="inbound START")
    assert not state(org).is_opted_out


@pytest.mark.parametrize(
    "reason, lifted", [("stop_keyword", True), ("carrier_stop", False), ("deactivated", False)]
)
def test_any_inbound_lifts_only_a_stop_keyword(org, reason, lifted):
    services.number_opt_out(org=org, phone=PHONE, reason=reason)
    services.number_opt_in(org=org, phone=PHONE, via=OptIn.ANY_INBOUND)
    assert state(org).is_opted_out is not lifted


def test_staff_lift_only_a_staff_opt_out_and_with_a_note(org, owner):
    services.number_opt_out(org=org, phone=PHONE, reason=OptOutReason.STOP_KEYWORD)
    with pytest.raises(StateChangeRefused, match="Only the contact"):
        services.number_opt_in(org=org, phone=PHONE, via=OptIn.STAFF, by=owner, note="asked")
    other = "+12125550124"
    services.number_opt_out(org=org, phone=other, reason=OptOutReason.STAFF, by=owner)
    with pytest.raises(StateChangeRefused, match="note"):
        services.number_opt_in(org=org, phone=other, via=OptIn.STAFF, by=owner, note=" ")
    services.number_opt_in(org=org, phone=other, via=OptIn.STAFF, by=owner, note="Changed mind")
    assert not state(org, other).is_opted_out
    assert last_audit(org).note == "Changed mind"


# Pause --------------------------------------------------------------------------------------------


def test_a_pause_lasts_at_most_30_days(org, teammate):
    now = timezone.now()
    with pytest.raises(StateChangeRefused, match="30 days"):
        services.number_pause(
            org=org, phone=PHONE, until=now + timedelta(days=30, minutes=1), by=teammate
        )
    with pytest.raises(StateChangeRefused, match="future"):
        services.number_pause(org=org, phone=PHONE, until=now - timedelta(minutes=1), by=teammate)
    services.number_pause(
        org=org, phone=PHONE, until=now + timedelta(days=29, hours=23), by=teammate
    )
    assert state(org).is_paused(timezone.now())


def test_pauses_end_by_themselves(org, teammate):
    services.number_pause(
        org=org, phone=PHONE, until=timezone.now() + timedelta(hours=1), by=teammate
    )
    assert services.pauses_end_expired(now=timezone.now()) == 0
    assert services.pauses_end_expired(now=timezone.now() + timedelta(hours=2)) == 1
    assert state(org).paused_until is None
    assert last_audit(org).action == "pause_ended"


def test_resume(org, teammate):
    services.number_pause(
        org=org, phone=PHONE, until=timezone.now() + timedelta(days=2), by=teammate
    )
    services.number_resume(org=org, phone=PHONE, by=teammate)
    assert state(org).paused_until is None


def test_a_deactivation_during_a_pause_becomes_an_opt_out(org, teammate):
    contact = make_contact(org, "+12125550196")
    services.number_pause(
        org=org, phone=contact.phone_e164, until=timezone.now() + timedelta(days=5), by=teammate
    )
    services.deactivation_apply(phones=[contact.phone_e164], list_date=date(2026, 11, 21))
    paused = state(org, contact.phone_e164)
    assert (paused.opt_out_reason, paused.paused_until) == ("deactivated", None)
    assert last_audit(org).system_cause == "deactivation list 2026-11-21"


# Re-check and phone changes ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [21211, 21265, 21268, 30005])
def test_flags_a_lookup_cannot_disprove_cannot_be_rechecked(org, teammate, code):
    services.error_apply(org=org, phone=PHONE, code=code)
    with pytest.raises(StateChangeRefused):
        services.number_recheck(
            org=org, phone=PHONE, by=teammate, lookup=lambda p: normalize("mobile")
        )


def test_a_recheck_clears_a_landline_flag_only_when_the_number_takes_sms(org, teammate):
    services.error_apply(org=org, phone=PHONE, code=21614)
    services.number_recheck(
        org=org, phone=PHONE, by=teammate, lookup=lambda p: normalize("landline")
    )
    assert state(org).is_invalid
    assert last_audit(org).action == "recheck"
    services.number_recheck(org=org, phone=PHONE, by=teammate, lookup=lambda p: normalize("mobile"))
    assert not state(org).is_invalid
    assert last_audit(org).action == "auto_valid"


def test_a_new_number_frees_the_member_and_the_old_keeps_its_flag(org, teammate):
    contact = make_contact(org, PHONE)
    services.error_apply(org=org, phone=PHONE, code=21614)
    services.contact_change_phone(contact=contact, raw="(212) 555-0140", by=teammate)
    contact.refresh_from_db()
    assert contact.phone_e164 == "+12125550140"
    assert state(org).invalid_source == "automatic"  # the old number keeps its flag
    assert checks.check_number(org=org, phone=contact.phone_e164) is None
    assert last_audit(org).action == "phone_changed"


# Catalogue effects that leave the number alone -------------------------------------------------


@pytest.mark.parametrize("code", [30007, 30019, 30001, 30022])
def test_content_and_throughput_errors_leave_the_number_alone(org, code):
    services.error_apply(org=org, phone=PHONE, code=code)
    assert (
        not NumberState.objects.filter(phone=PHONE)
        .exclude(invalid_source="", opt_out_reason="", error_streak=0)
        .exists()
    )


def test_sender_errors_raise_one_alert_and_count_repeats(org):
    for _ in range(3):
        services.error_apply(org=org, phone=PHONE, code=30034, sender_ref="+16175550001")
    alert = OrgAlert.objects.get()
    assert (alert.kind, alert.occurrences, alert.error_code) == ("sender_error", 3, "30034")


# Lookups under the simulator's plan, and deactivation lists ------------------------------------


@pytest.mark.parametrize(
    "phone, line_type",
    [("+12125550101", "mobile"), ("+12125550155", "landline"), ("+12125550186", "nonFixedVoip")],
)
def test_lookups_follow_the_simulators_plan(settings, phone, line_type):
    settings.SMS_BACKEND = "simulator"
    assert lookup_line_type(phone).line_type == line_type


def test_an_odd_line_type_is_unknown_and_does_not_block(org):
    assert normalize({"not": "a string"}).line_type == "unknown"
    assert normalize("satellitePhone").line_type == "unknown"
    services.facts_record_lookup(phone=PHONE, result=normalize("satellitePhone"))
    assert checks.check_number(org=org, phone=PHONE) is None


def test_a_lookup_saying_landline_flags_every_org_holding_the_number(org, other_org):
    make_contact(org, PHONE)
    make_contact(other_org, PHONE)
    services.facts_record_lookup(phone=PHONE, result=normalize("landline", "Bell"))
    assert state(org).invalid_code == "lookup" and state(other_org).invalid_code == "lookup"


def test_deactivation_lists_are_read_with_or_without_the_country_code():
    text = "+12125550196\n2125550197\n\njunk\n12125550198,extra\n"
    assert parse_list(text) == ["+12125550196", "+12125550197", "+12125550198"]


def test_a_days_deactivations_are_imported_once(org, other_org, settings, capsys):
    settings.SMS_BACKEND = "simulator"
    make_contact(org, "+12125550196")
    make_contact(other_org, "+12125550196")
    make_contact(org, "+12125550101")
    first = import_deactivations(date(2026, 11, 20))
    assert (first.listed, first.opted_out) == (1, 2)
    audits = AuditEvent.objects.count()
    call_command("import_deactivations", "--date", "2026-11-20", "--until", "2026-11-21")
    assert "already imported" in capsys.readouterr().out
    assert AuditEvent.objects.count() == audits  # the 21st finds them already opted out
    assert state(org, "+12125550196").opt_out_reason == "deactivated"


def test_a_contact_added_later_gets_the_landline_flag_from_a_fresh_lookup(org, other_org):
    from deliverability.tasks import lookup_number

    make_contact(org, PHONE)
    services.facts_record_lookup(phone=PHONE, result=normalize("landline"))
    make_contact(other_org, PHONE)  # joins after the lookup, within its 90 days
    lookup_number(PHONE)
    assert state(other_org).invalid_code == "lookup"


def test_an_attempt_reported_late_does_not_move_the_last_attempt_back(org):
    now = timezone.now()
    services.record_attempts(org=org, phones=[PHONE], at=now)
    services.record_attempts(org=org, phones=[PHONE], at=now - timedelta(days=3))
    assert state(org).last_attempt_at == now
