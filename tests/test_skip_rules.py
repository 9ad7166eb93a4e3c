"""The pre-send checks of SPEC §5: each skip reason, its order, the exemptions, the boundaries,
set-based query counts, and a property test against an obviously-correct reference model."""

from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contacts.models import Contact
from deliverability import eligibility, outcomes
from deliverability.models import NumberFacts, NumberState, OptOutReason
from tests.factories import make_contact

PHONE = "+12125550123"
NOW = timezone.now().replace(microsecond=0)


def verdict(org, phone=PHONE, now=NOW, is_test=False):
    return eligibility.check_number(org=org, phone=phone, now=now, is_test=is_test)


def errors(org, days_ago, phone=PHONE, code=30003):
    for days in days_ago:
        at = NOW - timedelta(days=days)
        outcomes.record_attempts(org=org, phones=[phone], at=at)
        outcomes.record_number_error(org=org, phone=phone, at=at, code=code)


# One test per reason --------------------------------------------------------------------------


def test_a_fresh_number_is_sendable(org):
    assert verdict(org) is None


def test_opted_out(org, owner):
    NumberState.objects.of(org=org, phone=PHONE).opt_out(reason=OptOutReason.STAFF, by=owner)
    assert verdict(org) == "opted_out"


def test_marked_invalid(org, owner):
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=owner)
    assert verdict(org) == "marked_invalid"


def test_invalid_number(org):
    assert verdict(org, phone="n/a") == "invalid_number"
    assert verdict(org, phone="12345") == "invalid_number"


def test_landline(org):
    NumberFacts.objects.create(phone=PHONE, line_type="landline")
    assert verdict(org) == "landline"


@pytest.mark.parametrize("line_type", ["pager", "premium", "voicemail", "sharedCost", "uan"])
def test_other_types_that_cannot_take_sms_are_landline(org, line_type):
    NumberFacts.objects.create(phone=PHONE, line_type=line_type)
    assert verdict(org) == "landline"


@pytest.mark.parametrize("line_type", ["mobile", "nonFixedVoip", "fixedVoip", "unknown", ""])
def test_types_that_can_take_sms_or_unknown_do_not_block(org, line_type):
    NumberFacts.objects.create(phone=PHONE, line_type=line_type)
    assert verdict(org) is None


def test_paused(org, owner):
    NumberState.objects.of(org=org, phone=PHONE).pause(
        until=timezone.now() + timedelta(days=3), by=owner
    )
    assert verdict(org, now=timezone.now()) == "paused"
    assert verdict(org, now=timezone.now() + timedelta(days=4)) is None  # the pause ended


def test_recent_errors_needs_five_in_a_row(org):
    errors(org, [10, 9, 8, 7])
    assert verdict(org) is None
    errors(org, [6])
    assert verdict(org) == "recent_errors"


def test_a_delivery_ends_the_streak(org):
    errors(org, [10, 9, 8, 7])
    outcomes.record_success(
        org=org, phone=PHONE, at=NOW - timedelta(days=6, hours=12), delivered=True
    )
    errors(org, [6])
    assert verdict(org) is None


def test_a_final_sent_ends_the_streak_but_is_no_heartbeat(org, other_org):
    errors(org, [20, 19, 18])
    errors(other_org, [17, 16, 15])
    outcomes.record_success(org=org, phone=PHONE, at=NOW - timedelta(days=14), delivered=False)
    assert NumberState.objects.get(organization=org, phone=PHONE).error_streak == 0
    assert verdict(org) == "global_lifetime_error_count"  # 6 errors since any heartbeat


def test_global_needs_more_than_five_since_the_heartbeat(org, other_org):
    errors(org, [30, 29, 28])
    errors(other_org, [27, 26])
    assert verdict(org) is None  # five is not more than five
    errors(other_org, [25])
    assert verdict(org) == "global_lifetime_error_count"


def test_a_heartbeat_resets_the_global_count(org, other_org):
    errors(org, [30, 29, 28])
    errors(other_org, [27, 26, 25])
    outcomes.record_heartbeat(phone=PHONE, at=NOW - timedelta(days=1))
    assert verdict(org) is None


def test_an_error_from_before_the_heartbeat_does_not_count(org, other_org):
    outcomes.record_heartbeat(phone=PHONE, at=NOW - timedelta(days=5))
    errors(org, [30, 29, 28])
    errors(other_org, [27, 26, 25])  # reported late, attempted before the heartbeat
    assert verdict(org) is None


# The order of SPEC §5 -------------------------------------------------------------------------


def test_the_first_reason_in_the_table_is_recorded(org, owner):
    NumberFacts.objects.create(phone=PHONE, line_type="landline")
    NumberState.objects.of(org=org, phone=PHONE).pause(
        until=timezone.now() + timedelta(days=3), by=owner
    )
    assert verdict(org, now=timezone.now()) == "landline"
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=owner)
    assert verdict(org) == "marked_invalid"
    NumberState.objects.of(org=org, phone=PHONE).opt_out(reason=OptOutReason.STAFF, by=owner)
    assert verdict(org) == "opted_out"


# Sample Text -----------------------------------------------------------------------------------


def test_a_sample_text_skips_every_check_but_opt_out_and_invalid(org, owner, other_org):
    NumberFacts.objects.create(phone=PHONE, line_type="landline")
    errors(org, [10, 9, 8, 7, 6])
    errors(other_org, [5, 4])
    NumberState.objects.of(org=org, phone=PHONE).pause(
        until=timezone.now() + timedelta(days=3), by=owner
    )
    assert verdict(org, now=timezone.now(), is_test=True) is None
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=owner)
    assert verdict(org, is_test=True) == "marked_invalid"
    NumberState.objects.of(org=org, phone=PHONE).opt_out(reason=OptOutReason.STAFF, by=owner)
    assert verdict(org, is_test=True) == "opted_out"


# The 80-day rules at their boundaries ---------------------------------------------------------


@pytest.mark.parametrize(
    "days, expected", [(79, "recent_errors"), (80, "recent_errors"), (81, None)]
)
def test_only_errors_within_the_last_80_days_make_a_streak(org, days, expected):
    errors(org, [days, 40, 30, 20, 10])  # the fifth error of the streak is `days` old
    assert verdict(org) == expected


@pytest.mark.parametrize(
    "days, expected", [(79, "global_lifetime_error_count"), (80, None), (81, None)]
)
def test_a_number_not_attempted_for_80_days_gets_one_more_try(org, other_org, days, expected):
    errors(org, [days + 6, days + 5, days + 4])
    errors(other_org, [days + 3, days + 2, days])
    assert verdict(org) == expected


# Set-based: one query however many recipients ------------------------------------------------


def test_the_number_of_queries_does_not_grow_with_recipients(org, django_assert_num_queries):
    for n in range(10):
        make_contact(org, f"+1212555{n:04d}")
    with django_assert_num_queries(1):
        eligibility.skip_counts(Contact.objects.all(), org=org)
    for n in range(10, 300):
        make_contact(org, f"+1212555{n:04d}")
    with django_assert_num_queries(1):
        counts = eligibility.skip_counts(Contact.objects.all(), org=org)
    assert sum(counts.values()) == 300
    with django_assert_num_queries(1):
        assert len(list(eligibility.check_contacts(Contact.objects.all(), org=org))) == 300


def test_the_single_recipient_form_agrees_with_the_set(org, owner):
    contacts = [make_contact(org, f"+1212555{n:04d}") for n in range(6)]
    NumberState.objects.of(org=org, phone=contacts[0].phone_e164).mark_invalid(by=owner)
    NumberState.objects.of(org=org, phone=contacts[1].phone_e164).opt_out(reason="staff", by=owner)
    NumberFacts.objects.create(phone=contacts[2].phone_e164, line_type="landline")
    for contact, reason in eligibility.check_contacts(Contact.objects.all(), org=org).values_list(
        "phone_e164", "skip_reason"
    ):
        assert eligibility.check_number(org=org, phone=contact) == reason


# A reference model, and random histories -----------------------------------------------------


def reference(events, org_key, now, is_test=False):
    """SPEC §5 read literally, over the raw history of one number."""
    org_events = [e for e in events if e[1] == org_key]
    opted_out = any(e[2] == "opt_out" for e in org_events)
    invalid = any(e[2] == "invalid" for e in org_events)
    paused = any(e[2] == "pause" and e[3] > now for e in org_events)
    if opted_out:
        return "opted_out"
    if invalid:
        return "marked_invalid"
    if is_test:
        return None
    if paused:
        return "paused"
    attempts = sorted(e for e in org_events if e[2] in ("error", "delivered", "sent"))
    streak = []
    for at, _, kind, _ in attempts:
        streak = [*streak, at] if kind == "error" else []
    recent = [at for at in streak if at >= now - timedelta(days=80)]
    last_org_attempt = max((e[0] for e in attempts), default=None)
    org_retry = last_org_attempt is not None and last_org_attempt <= now - timedelta(days=80)
    if len(recent) >= 5 and not org_retry:
        return "recent_errors"
    heartbeats = [e[0] for e in events if e[2] in ("delivered", "inbound")]
    since = max(heartbeats, default=None)
    global_errors = [e for e in events if e[2] == "error" and (since is None or e[0] > since)]
    last_attempt = max(
        (e[0] for e in events if e[2] in ("error", "delivered", "sent")), default=None
    )
    retry = last_attempt is not None and last_attempt <= now - timedelta(days=80)
    if len(global_errors) > 5 and not retry:
        return "global_lifetime_error_count"
    return None


event = st.tuples(
    st.integers(min_value=1, max_value=120),  # days ago
    st.sampled_from(["a", "b"]),  # which org
    # Mostly errors, so that histories reach the thresholds; a state change now and then.
    st.sampled_from(
        ["error"] * 24 + ["delivered"] * 2 + ["sent"] * 2 + ["inbound"] * 2 + ["opt_out", "invalid"]
    ),
)


@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(event, max_size=20), test_message=st.booleans())
def test_the_checks_agree_with_the_reference_model(org, other_org, owner, history, test_message):
    NumberState.objects.all().delete()
    NumberFacts.objects.all().delete()
    orgs = {"a": org, "b": other_org}
    events = []
    # Distinct times, oldest first, as a number's history unfolds.
    for n, (days, key, kind) in enumerate(sorted(history, key=lambda e: -e[0])):
        at = NOW - timedelta(days=days, minutes=n)
        target = orgs[key]
        if kind in ("error", "delivered", "sent"):
            outcomes.record_attempts(org=target, phones=[PHONE], at=at)
        if kind == "error":
            outcomes.record_number_error(org=target, phone=PHONE, at=at, code=30003)
        elif kind in ("delivered", "sent"):
            outcomes.record_success(org=target, phone=PHONE, at=at, delivered=kind == "delivered")
        elif kind == "inbound":
            outcomes.record_heartbeat(phone=PHONE, at=at)
        elif kind == "opt_out" and not NumberState.objects.of(org=target, phone=PHONE).is_opted_out:
            NumberState.objects.of(org=target, phone=PHONE).opt_out(reason="staff", by=owner)
        elif kind == "invalid" and not NumberState.objects.of(org=target, phone=PHONE).is_invalid:
            NumberState.objects.of(org=target, phone=PHONE).mark_invalid(by=owner)
        events.append((at, key, kind, None))
    expected = reference(events, "a", NOW, is_test=test_message)
    assert verdict(org, is_test=test_message) == expected
