"""What each category of the Twilio error catalogue (SPEC §4) does to a number, through
services.error_apply: the catalogue decides, staff see the reason and never a bare code."""

import pytest

from contacts.models import Contact
from deliverability import catalogue, checks, services
from deliverability.catalogue import Category
from deliverability.models import AuditEvent, NumberFacts, NumberState, OrgAlert
from tests.factories import make_contact

PHONE = "+12125550123"
LANDLINE = "+12125550150"  # the simulator's plan: landline (SPEC §9)
MOBILE = "+12125550120"  # the simulator's plan: an ordinary mobile
SENDER = "+16175550001"


def state(org, phone=PHONE):
    return services.number_state(org=org, phone=phone)


def facts(phone=PHONE):
    return NumberFacts.objects.filter(phone=phone).first()


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
        and checks.check_number(org=org, phone=phone) is None
    )


@pytest.mark.parametrize("code", catalogue.codes_in(Category.INVALID))
def test_an_invalid_code_flags_the_number_automatically_with_its_code_and_reason(org, code):
    info = services.error_apply(org=org, phone=PHONE, code=code)
    flagged = state(org)
    assert (flagged.invalid_source, flagged.invalid_code, flagged.invalid_reason) == (
        "automatic",
        str(code),
        info.reason,
    )
    assert info.reason == catalogue.ERRORS[code][1]
    assert AuditEvent.objects.get().system_cause == f"Twilio {code}"
    assert checks.check_number(org=org, phone=PHONE) == "marked_invalid"


def test_21610_opts_the_number_out_as_a_carrier_stop(org):
    services.error_apply(org=org, phone=PHONE, code=21610)
    opted = state(org)
    assert opted.opt_out_reason == "carrier_stop"
    assert not opted.is_invalid
    event = AuditEvent.objects.get()
    assert (event.action, event.system_cause) == ("opt_out", "Twilio 21610")
    assert checks.check_number(org=org, phone=PHONE) == "opted_out"
    services.error_apply(org=org, phone=PHONE, code=21610)  # the next send fails the same way
    assert AuditEvent.objects.count() == 1


@pytest.mark.parametrize("code", catalogue.codes_in(Category.UNREACHABLE))
def test_an_unreachable_code_counts_one_error_in_the_org_and_across_orgs(org, code):
    services.error_apply(org=org, phone=PHONE, code=code)
    counted = state(org)
    assert counted.error_streak == 1
    assert not counted.is_invalid and not counted.is_opted_out
    known = facts()
    assert (known.errors_since_heartbeat, known.error_count, known.last_error_code) == (
        1,
        1,
        str(code),
    )
    services.error_apply(org=org, phone=PHONE, code=code)
    assert state(org).error_streak == 2
    assert facts().errors_since_heartbeat == 2
    assert not AuditEvent.objects.exists()  # counting is not a state change


@pytest.mark.parametrize("code", [30003, 30008, 21612])
def test_unreachable_codes_other_than_30006_ask_for_no_lookup(
    org, code, django_capture_on_commit_callbacks
):
    make_contact(org, LANDLINE)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.error_apply(org=org, phone=LANDLINE, code=code)
    assert callbacks == []
    assert facts(LANDLINE).looked_up_at is None
    assert not state(org, LANDLINE).is_invalid


def test_30006_on_a_landline_flags_the_number_after_a_fresh_lookup(
    org, django_capture_on_commit_callbacks
):
    contact = make_contact(org, LANDLINE)
    with django_capture_on_commit_callbacks(execute=True):
        services.error_apply(org=org, phone=LANDLINE, code=30006)

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
    assert checks.check_contacts(contacts, org=org).get().skip_reason == "marked_invalid"
    # A lookup can disprove this flag, so staff may re-check it (but not mark it valid).
    assert services.may_recheck(flagged)


def test_30006_on_a_landline_no_contact_holds_skips_it_as_a_landline(
    org, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.error_apply(org=org, phone=LANDLINE, code=30006)
    assert not state(org, LANDLINE).is_invalid
    assert facts(LANDLINE).line_type == "landline"
    assert checks.check_number(org=org, phone=LANDLINE) == "landline"


def test_30006_on_a_mobile_only_counts_the_error(org, django_capture_on_commit_callbacks):
    make_contact(org, MOBILE)
    with django_capture_on_commit_callbacks(execute=True):
        services.error_apply(org=org, phone=MOBILE, code=30006)
    assert not state(org, MOBILE).is_invalid
    assert facts(MOBILE).line_type == "mobile"
    assert state(org, MOBILE).error_streak == 1
    assert checks.check_number(org=org, phone=MOBILE) is None


@pytest.mark.parametrize(
    "code", catalogue.codes_in(Category.CONTENT) + catalogue.codes_in(Category.THROUGHPUT)
)
def test_content_and_throughput_errors_leave_the_number_alone(org, code):
    info = services.error_apply(org=org, phone=PHONE, code=code, sender_ref=SENDER)
    assert info.reason == catalogue.ERRORS[code][1]
    assert untouched(org)
    assert not NumberState.objects.exists()
    assert not OrgAlert.objects.exists()


@pytest.mark.parametrize("code", catalogue.codes_in(Category.SENDER))
def test_a_sender_error_raises_an_org_alert_and_leaves_the_number_alone(org, code):
    services.error_apply(org=org, phone=PHONE, code=code, sender_ref=SENDER)
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
        services.error_apply(org=org, phone=PHONE, code=30034, sender_ref=SENDER)
    alert = OrgAlert.objects.get()
    assert alert.occurrences == 3
    services.error_apply(org=org, phone=PHONE, code=30018, sender_ref=SENDER)
    services.error_apply(org=other_org, phone=PHONE, code=30034, sender_ref="+16175550002")
    assert OrgAlert.objects.count() == 3
    assert OrgAlert.objects.get(pk=alert.pk).occurrences == 3


def test_a_sender_error_after_the_alert_was_resolved_opens_a_new_one(org, owner):
    services.error_apply(org=org, phone=PHONE, code=30034, sender_ref=SENDER)
    services.alert_resolve(alert=OrgAlert.objects.get(), by=owner)
    services.error_apply(org=org, phone=PHONE, code=30034, sender_ref=SENDER)
    assert OrgAlert.objects.count() == 2
    assert OrgAlert.objects.filter(resolved_at__isnull=True).get().occurrences == 1


@pytest.mark.parametrize("code", [12345, "99999", 30999])
def test_an_unknown_code_counts_as_unreachable_with_a_readable_reason(org, code):
    info = services.error_apply(org=org, phone=PHONE, code=code)
    assert info.category == Category.UNREACHABLE
    assert info.reason == f"Unknown error (code {code})"
    assert state(org).error_streak == 1
    assert not state(org).is_invalid and not state(org).is_opted_out
    assert facts().errors_since_heartbeat == 1
    assert facts().last_error_code == str(code)


def test_an_unknown_code_counts_toward_the_error_rules_like_any_unreachable_one(org):
    for _ in range(4):
        services.error_apply(org=org, phone=PHONE, code=30003)
    assert checks.check_number(org=org, phone=PHONE) is None
    services.error_apply(org=org, phone=PHONE, code=31999)
    assert checks.check_number(org=org, phone=PHONE) == "recent_errors"


def test_error_effects_stay_in_the_org_where_the_send_failed(org, other_org):
    make_contact(other_org, PHONE)
    services.error_apply(org=org, phone=PHONE, code=21614)
    services.error_apply(org=org, phone="+12125550124", code=21610)
    assert not state(other_org).is_invalid
    assert not state(other_org, "+12125550124").is_opted_out
    assert checks.check_number(org=other_org, phone=PHONE) is None
