"""The pre-send checks of SPEC §5: each skip reason, their order, the Sample Text bypass, the
error rules at their boundaries, set-based query counts, and random histories compared with a
small reference model that reads SPEC §5 literally."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import hypothesis
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from contacts.models import Contact
from deliverability import catalogue, eligibility, outcomes, services
from deliverability.lookups import normalize
from deliverability.models import (
    NumberFacts,
    NumberState,
    OptIn,
    OptOutReason,
    ReviewItem,
    SkipReason,
)
from tests.factories import make_contact

PHONE = "+12125550123"
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)  # a fixed "now" for the error rules
DAY = timedelta(days=1)
UNREACHABLE = catalogue.codes_in(catalogue.Category.UNREACHABLE)


def verdict(org, phone=PHONE, now=NOW, is_test=False, broadcast=True, auto_reply=False):
    """The skip reason of a message to `phone`: by default one of a broadcast."""
    return eligibility.check_number(
        org=org, phone=phone, now=now, is_test=is_test, broadcast=broadcast, auto_reply=auto_reply
    )


def possible_opt_out(org, phone=PHONE, body="I want to cancel my membership"):
    """A reply from `phone` waiting in the Review queue as a possible opt-out."""
    now = timezone.now()
    return ReviewItem.objects.create(
        organization=org,
        phone=phone,
        body=body,
        kind=ReviewItem.Kind.OPT_OUT,
        rule="mentions_stop",
        received_at=now,
        due_at=now + 14 * DAY,
    )


def attempted(org, at, phone=PHONE):
    outcomes.record_attempts(org=org, phones=[phone], at=at)


def failed(org, *ats, phone=PHONE, code=30003):
    """Sends attempted at each of `ats` that ended undelivered with a number-attributable code."""
    for at in ats:
        attempted(org, at, phone)
        outcomes.record_number_error(org=org, phone=phone, at=at, code=code)


def delivered(org, at, phone=PHONE):
    attempted(org, at, phone)
    outcomes.record_success(org=org, phone=phone, at=at, delivered=True)


def sent_final(org, at, phone=PHONE):
    """A send whose last status was `sent` and never got a later one."""
    attempted(org, at, phone)
    outcomes.record_success(org=org, phone=phone, at=at, delivered=False)


def days_ago(*days, now=NOW):
    return [now - d * DAY for d in days]


# One test per reason ---------------------------------------------------------------------------


def test_a_number_sent_to_for_the_first_time_is_sendable(org):
    assert verdict(org) is None
    assert verdict(org, now=timezone.now()) is None


def test_a_number_that_never_errored_is_sendable(org, other_org):
    for at in days_ago(30, 20, 10, 5, 3, 2, 1):
        delivered(org, at)
        sent_final(other_org, at + timedelta(hours=1))
    assert verdict(org) is None
    assert verdict(other_org) is None


@pytest.mark.parametrize("reason", OptOutReason.values)
def test_opted_out(org, owner, reason):
    by = owner if reason == OptOutReason.STAFF else None
    NumberState.objects.of(org=org, phone=PHONE).opt_out(reason=reason, by=by)
    assert verdict(org) == SkipReason.OPTED_OUT


def test_marked_invalid_by_staff(org, teammate):
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=teammate)
    assert verdict(org) == SkipReason.MARKED_INVALID


def test_marked_invalid_automatically(org):
    outcomes.error_apply(org=org, phone=PHONE, code=30005)
    assert verdict(org) == SkipReason.MARKED_INVALID


@pytest.mark.parametrize("raw", ["n/a", "none", "12345", "911", "+19005550123", "555", ""])
def test_invalid_number(org, raw):
    assert verdict(org, phone=raw) == SkipReason.INVALID_NUMBER


def test_contacts_without_a_usable_number_are_invalid_number(org):
    make_contact(org, "n/a")
    make_contact(org, "")
    reasons = eligibility.check_contacts(Contact.objects.all(), org=org).values_list(
        "skip_reason", flat=True
    )
    assert list(reasons) == ["invalid_number", "invalid_number"]


@pytest.mark.parametrize(
    "line_type", ["landline", "pager", "premium", "voicemail", "sharedCost", "uan"]
)
def test_landline_or_another_type_that_cannot_take_sms(org, line_type):
    services.facts_record_lookup(phone=PHONE, result=normalize(line_type))
    assert verdict(org) == SkipReason.LANDLINE


@pytest.mark.parametrize(
    "line_type", ["mobile", "nonFixedVoip", "fixedVoip", "tollFree", "unknown", "", "odd"]
)
def test_types_that_take_sms_or_are_unknown_are_sendable(org, line_type):
    services.facts_record_lookup(phone=PHONE, result=normalize(line_type))
    assert verdict(org) is None


def test_paused_until_the_pause_ends(org, teammate):
    now = timezone.now()
    NumberState.objects.of(org=org, phone=PHONE).pause(until=now + 3 * DAY, by=teammate)
    assert verdict(org, now=now) == SkipReason.PAUSED
    assert verdict(org, now=now + 3 * DAY - timedelta(seconds=1)) == SkipReason.PAUSED
    assert verdict(org, now=now + 3 * DAY) is None


def test_recent_errors(org):
    failed(org, *days_ago(5, 4, 3, 2, 1))
    assert verdict(org) == SkipReason.RECENT_ERRORS


def test_global_lifetime_error_count(org, other_org):
    failed(org, *days_ago(6, 5, 4))
    failed(other_org, *days_ago(3, 2, 1))
    assert verdict(org) == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT
    assert verdict(other_org) == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT


# The order of SPEC §5 --------------------------------------------------------------------------

ORDER = list(SkipReason.values)
VALID_PHONE_REASONS = [r for r in ORDER if r != SkipReason.INVALID_NUMBER]


def cause(reason, *, org, other_org, staff, now):
    """Make `reason` apply to PHONE in `org`, in the way the product makes it."""
    if reason == SkipReason.OPTED_OUT:
        NumberState.objects.of(org=org, phone=PHONE).opt_out(reason=OptOutReason.STAFF, by=staff)
    elif reason == SkipReason.PENDING_REVIEW:
        possible_opt_out(org)
    elif reason == SkipReason.MARKED_INVALID:
        NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=staff)
    elif reason == SkipReason.LANDLINE:
        services.facts_record_lookup(phone=PHONE, result=normalize("landline"))
    elif reason == SkipReason.PAUSED:
        NumberState.objects.of(org=org, phone=PHONE).pause(until=now + 5 * DAY, by=staff)
    elif reason == SkipReason.RECENT_ERRORS:
        failed(org, *days_ago(15, 14, 13, 12, 11, now=now))
    elif reason == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT:
        failed(other_org, *days_ago(10, 9, 8, 7, 6, 5, now=now))


@pytest.mark.parametrize(
    "first, second",
    [(a, b) for i, a in enumerate(VALID_PHONE_REASONS) for b in VALID_PHONE_REASONS[i + 1 :]],
)
def test_when_two_reasons_apply_the_first_in_the_table_is_recorded(
    org, other_org, owner, first, second
):
    now = timezone.now()
    # The later reason first: a pause cannot be made once the number is opted out.
    cause(second, org=org, other_org=other_org, staff=owner, now=now)
    cause(first, org=org, other_org=other_org, staff=owner, now=now)
    assert verdict(org, now=now) == first


def test_every_reason_at_once_peels_off_in_the_order_of_the_table(org, other_org, owner):
    now = timezone.now()
    for reason in reversed(VALID_PHONE_REASONS):
        if reason != SkipReason.OPTED_OUT:  # an opt-out would end the pause; it comes last
            cause(reason, org=org, other_org=other_org, staff=owner, now=now)
    assert verdict(org, now=now) == SkipReason.PENDING_REVIEW
    ReviewItem.objects.update(decision=ReviewItem.Decision.NOT_OPT_OUT)
    assert verdict(org, now=now) == SkipReason.MARKED_INVALID
    NumberState.objects.of(org=org, phone=PHONE).mark_valid(by=owner)
    assert verdict(org, now=now) == SkipReason.LANDLINE
    services.facts_record_lookup(phone=PHONE, result=normalize("mobile"))
    assert verdict(org, now=now) == SkipReason.PAUSED
    NumberState.objects.of(org=org, phone=PHONE).resume(by=owner)
    assert verdict(org, now=now) == SkipReason.RECENT_ERRORS
    sent_final(org, now - 10 * DAY - timedelta(hours=12))  # ends the streak, no heartbeat
    assert verdict(org, now=now) == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT
    outcomes.record_heartbeat(phone=PHONE, at=now - DAY)
    assert verdict(org, now=now) is None
    NumberState.objects.of(org=org, phone=PHONE).opt_out(reason=OptOutReason.STAFF, by=owner)
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=owner)
    assert verdict(org, now=now) == SkipReason.OPTED_OUT


def test_an_opt_out_or_flag_on_an_unusable_number_comes_before_invalid_number(org, owner):
    # An inbound message from text that is no phone number is still stored against that text.
    NumberState.objects.of(org=org, phone="n/a").mark_invalid(by=owner)
    assert verdict(org, phone="n/a") == SkipReason.MARKED_INVALID
    NumberState.objects.of(org=org, phone="n/a").opt_out(reason=OptOutReason.STAFF, by=owner)
    assert verdict(org, phone="n/a") == SkipReason.OPTED_OUT
    assert verdict(org, phone="none") == SkipReason.INVALID_NUMBER


# A reply waiting in the Review queue -----------------------------------------------------------


def test_a_possible_opt_out_holds_back_broadcasts_only(org, other_org):
    item = possible_opt_out(org)
    assert verdict(org) == SkipReason.PENDING_REVIEW
    assert verdict(org, broadcast=False) is None  # a one-to-one reply from staff
    assert verdict(org, is_test=True) is None  # a Sample Text
    assert verdict(other_org) is None  # another org's queue
    item.decision = ReviewItem.Decision.NOT_OPT_OUT
    item.save()
    assert verdict(org) is None


def test_a_resubscribe_request_holds_back_nothing(org):
    item = possible_opt_out(org)
    item.kind = ReviewItem.Kind.RESUBSCRIBE
    item.save()
    assert verdict(org) is None


def test_the_broadcast_checks_stay_one_query_with_reviews_waiting(org, django_assert_num_queries):
    for n in range(20):
        contact = make_contact(org, f"+1212555{n:04d}")
        if n % 2:
            possible_opt_out(org, contact.phone_e164)
    with django_assert_num_queries(1):
        counts = eligibility.skip_counts(Contact.objects.all(), org=org)
    assert counts["pending_review"] == 10
    assert counts["sendable"] == 10


# One number, one text (duplicate_number) ---------------------------------------------------------


def verdicts(org, contacts=None):
    contacts = Contact.objects.all() if contacts is None else contacts
    return dict(
        eligibility.check_contacts(contacts, org=org, now=NOW).values_list("id", "skip_reason")
    )


def test_a_second_contact_on_the_same_number_is_a_duplicate(org):
    first = make_contact(org, PHONE, first_name="Chloe")
    second = make_contact(org, "(212) 555-0123", first_name="Sam")
    other = make_contact(org, "+12125550124")
    assert verdicts(org) == {first.pk: None, second.pk: "duplicate_number", other.pk: None}
    counts = eligibility.skip_counts(Contact.objects.all(), org=org, now=NOW)
    assert (counts["sendable"], counts["duplicate_number"]) == (2, 1)


def test_an_earlier_reason_is_kept_by_every_contact_on_the_number(org):
    first, second = make_contact(org, PHONE), make_contact(org, PHONE)
    NumberState.objects.of(org=org, phone=PHONE).opt_out(reason="stop_keyword", cause="STOP")
    assert verdicts(org) == {first.pk: "opted_out", second.pk: "opted_out"}


def test_contacts_without_a_usable_number_are_not_duplicates_of_each_other(org):
    first, second = make_contact(org, "n/a"), make_contact(org, "none")
    assert verdicts(org) == {first.pk: "invalid_number", second.pk: "invalid_number"}


def test_only_recipients_of_the_same_broadcast_count_as_duplicates(org, other_org):
    make_contact(org, PHONE, first_name="Chloe")
    second = make_contact(org, PHONE, first_name="Sam")
    make_contact(other_org, PHONE)  # the same number in another org is another list
    assert verdicts(org, Contact.objects.filter(first_name="Sam")) == {second.pk: None}


def test_the_duplicate_check_stays_one_query(org, django_assert_num_queries):
    for n in range(20):
        make_contact(org, f"+1212555{n // 2:04d}")
    with django_assert_num_queries(1):
        counts = eligibility.skip_counts(Contact.objects.all(), org=org)
    assert (counts["sendable"], counts["duplicate_number"]) == (10, 10)


def test_a_sample_text_is_never_a_duplicate(org):
    make_contact(org, PHONE), make_contact(org, PHONE)
    counts = eligibility.skip_counts(Contact.objects.all(), org=org, now=NOW, is_test=True)
    assert (counts["sendable"], counts["duplicate_number"]) == (2, 0)


# Automatic replies (HELP, the opt-out confirmation) ---------------------------------------------


def test_an_automatic_reply_is_held_back_only_by_the_invalid_flag_or_a_carrier_stop(
    org, other_org, owner
):
    now = timezone.now()
    for reason in (SkipReason.PAUSED, SkipReason.RECENT_ERRORS, SkipReason.LANDLINE):
        cause(reason, org=org, other_org=other_org, staff=owner, now=now)
    NumberState.objects.of(org=org, phone=PHONE).opt_out(reason=OptOutReason.STOP_KEYWORD)
    possible_opt_out(org)
    assert verdict(org, now=now, broadcast=False) == SkipReason.OPTED_OUT
    assert verdict(org, now=now, broadcast=False, auto_reply=True) is None
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=owner)
    assert verdict(org, now=now, auto_reply=True) == SkipReason.MARKED_INVALID


def test_an_automatic_reply_to_a_carrier_stop_is_held_back(org):
    outcomes.error_apply(org=org, phone=PHONE, code=21610)
    assert verdict(org, auto_reply=True) == SkipReason.OPTED_OUT


# Sample Text -----------------------------------------------------------------------------------


def test_a_sample_text_skips_every_check_but_opted_out_and_marked_invalid(org, other_org, owner):
    now = timezone.now()
    for reason in (
        SkipReason.LANDLINE,
        SkipReason.PAUSED,
        SkipReason.RECENT_ERRORS,
        SkipReason.GLOBAL_LIFETIME_ERROR_COUNT,
    ):
        cause(reason, org=org, other_org=other_org, staff=owner, now=now)
    assert verdict(org, now=now) == SkipReason.LANDLINE
    assert verdict(org, now=now, is_test=True) is None
    NumberState.objects.of(org=org, phone=PHONE).mark_invalid(by=owner)
    assert verdict(org, now=now, is_test=True) == SkipReason.MARKED_INVALID
    NumberState.objects.of(org=org, phone=PHONE).opt_out(reason=OptOutReason.STAFF, by=owner)
    assert verdict(org, now=now, is_test=True) == SkipReason.OPTED_OUT


def test_a_sample_text_to_an_automatically_flagged_number_is_skipped(org):
    outcomes.error_apply(org=org, phone=PHONE, code=21614)
    assert verdict(org, is_test=True) == SkipReason.MARKED_INVALID


def test_a_sample_text_still_needs_something_that_is_a_phone_number(org):
    # SPEC §2: a value that does not parse is never sent to; there is no destination to text.
    assert verdict(org, phone="n/a", is_test=True) == SkipReason.INVALID_NUMBER


# The 80-day rules at their boundaries ----------------------------------------------------------


@pytest.mark.parametrize(
    "age, expected", [(79, "recent_errors"), (80, "recent_errors"), (81, None)]
)
def test_recent_errors_counts_only_errors_within_the_last_80_days(org, age, expected):
    failed(org, *days_ago(age, 40, 30, 20, 10))  # the oldest of the five is `age` days old
    assert verdict(org) == expected


def test_recent_errors_counts_the_errors_in_the_window_not_the_whole_streak(org):
    outcomes.record_heartbeat(phone=PHONE, at=NOW - 95 * DAY)  # keeps the global rule out
    failed(org, *days_ago(120, 100, 90, 30, 20, 10, 5))  # a streak of 7, 4 of them recent
    assert verdict(org) is None
    failed(org, NOW - DAY)
    assert verdict(org) == SkipReason.RECENT_ERRORS


@pytest.mark.parametrize(
    "age, expected", [(79, "global_lifetime_error_count"), (80, None), (81, None)]
)
def test_a_number_not_attempted_for_80_days_or_more_gets_a_new_attempt(
    org, other_org, age, expected
):
    failed(org, *days_ago(age + 30, age + 20, age + 10))
    failed(other_org, *days_ago(age + 3, age + 2, age))  # the last attempt is `age` days old
    assert verdict(org) == expected


def test_the_new_attempt_after_80_days_is_only_one(org, other_org):
    failed(org, *days_ago(120, 110, 100))
    failed(other_org, *days_ago(95, 90, 85))
    assert verdict(org) is None
    attempted(org, NOW - timedelta(minutes=5))  # the one new attempt, no outcome yet
    assert verdict(org) == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT
    outcomes.record_number_error(org=org, phone=PHONE, at=NOW - timedelta(minutes=5), code=30003)
    assert verdict(org) == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT


def test_the_new_attempt_after_80_days_that_is_delivered_clears_the_number(org, other_org):
    failed(org, *days_ago(120, 110, 100))
    failed(other_org, *days_ago(95, 90, 85))
    delivered(org, NOW - timedelta(minutes=5))
    assert verdict(org) is None


@pytest.mark.parametrize("age, expected", [(79, "recent_errors"), (80, None)])
def test_a_burst_of_errors_exactly_80_days_ago_is_also_a_new_attempt(org, age, expected):
    # Within the window at 80 days, but not attempted for 80 days: one new attempt.
    failed(org, *[NOW - age * DAY] * 5)
    assert verdict(org) == expected


# recent_errors: five in a row in this org ------------------------------------------------------


def test_four_errors_in_a_row_are_fine_and_five_skip(org):
    failed(org, *days_ago(10, 9, 8, 7))
    assert verdict(org) is None
    failed(org, NOW - 6 * DAY)
    assert verdict(org) == SkipReason.RECENT_ERRORS


def test_a_delivery_in_between_starts_the_count_again(org):
    failed(org, *days_ago(10, 9, 8))
    delivered(org, NOW - 7 * DAY)
    failed(org, *days_ago(6, 5, 4, 3))
    assert verdict(org) is None
    failed(org, NOW - 2 * DAY)
    assert verdict(org) == SkipReason.RECENT_ERRORS


def test_a_final_sent_ends_the_streak_in_the_org_but_not_the_global_count(org):
    failed(org, *days_ago(10, 9, 8))
    sent_final(org, NOW - 7 * DAY)
    failed(org, *days_ago(6, 5, 4))
    # Three in a row since the sent: no recent_errors; but a sent is no heartbeat, so the six
    # errors since the number was last heard from make the global rule apply.
    assert NumberState.objects.of(org=org, phone=PHONE).error_streak == 3
    assert NumberFacts.objects.get(phone=PHONE).errors_since_heartbeat == 6
    assert verdict(org) == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT


def test_a_delivery_reported_late_still_ends_the_streak_of_the_errors_before_it(org):
    failed(org, *days_ago(10, 9, 8, 7, 5, 4))
    outcomes.record_success(org=org, phone=PHONE, at=NOW - 6 * DAY, delivered=True)
    assert verdict(org) is None  # two errors since the delivery (and a heartbeat)


def test_an_error_reported_after_a_later_delivery_does_not_count(org):
    failed(org, *days_ago(10, 9, 8, 7))
    delivered(org, NOW - 3 * DAY)
    failed(org, NOW - 5 * DAY)  # attempted before the delivery, reported after it
    assert NumberState.objects.of(org=org, phone=PHONE).error_streak == 0
    assert verdict(org) is None


def test_errors_in_another_org_do_not_make_this_orgs_streak(org, other_org):
    failed(org, *days_ago(10, 9, 8, 7))
    failed(other_org, NOW - 6 * DAY)
    assert verdict(org) is None  # four here, and five overall is not more than five
    assert verdict(other_org) is None


@pytest.mark.parametrize("code", [30007, 30019, 21212, 30034, 30022, 429])
def test_errors_that_are_not_the_numbers_fault_do_not_count(org, code):
    for at in days_ago(10, 9, 8, 7, 6, 5, 4):
        attempted(org, at)
        outcomes.error_apply(org=org, phone=PHONE, code=code, at=at)
    assert verdict(org) is None


@pytest.mark.parametrize("code", UNREACHABLE)
def test_every_unreachable_code_counts_toward_the_streak(org, code):
    for at in days_ago(10, 9, 8, 7, 6):
        attempted(org, at)
        outcomes.error_apply(org=org, phone=PHONE, code=code, at=at)
    assert verdict(org) == SkipReason.RECENT_ERRORS


# global_lifetime_error_count: more than five since the latest heartbeat ------------------------


def test_five_errors_across_orgs_are_fine_and_six_skip(org, other_org):
    failed(org, *days_ago(10, 9, 8))
    failed(other_org, *days_ago(7, 6))
    assert verdict(org) is None
    failed(other_org, NOW - 5 * DAY)
    assert verdict(org) == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT


def test_an_inbound_reply_resets_the_global_count(org, other_org):
    failed(org, *days_ago(10, 9, 8))
    failed(other_org, *days_ago(7, 6, 5))
    outcomes.record_heartbeat(phone=PHONE, at=NOW - 4 * DAY)
    assert verdict(org) is None
    failed(other_org, *days_ago(3, 2, 1))
    assert verdict(org) is None  # three since the heartbeat


def test_a_delivery_in_another_org_resets_the_global_count_but_not_this_orgs_streak(org, other_org):
    failed(org, *days_ago(10, 9, 8, 7))
    failed(other_org, *days_ago(6, 5))
    delivered(other_org, NOW - 4 * DAY)
    failed(org, NOW - 3 * DAY)
    assert NumberFacts.objects.get(phone=PHONE).errors_since_heartbeat == 1
    assert verdict(org) == SkipReason.RECENT_ERRORS
    assert verdict(other_org) is None


def test_errors_attempted_before_the_heartbeat_do_not_count_even_if_reported_after(org, other_org):
    outcomes.record_heartbeat(phone=PHONE, at=NOW - 5 * DAY)
    failed(org, *days_ago(12, 11, 10))
    failed(other_org, *days_ago(9, 8, 7))  # all attempted before the reply
    assert verdict(org) is None
    failed(other_org, *days_ago(4, 3))
    assert verdict(org) is None


def test_a_heartbeat_reported_late_resets_only_the_errors_before_it(org, other_org):
    failed(org, *days_ago(20, 19, 18, 17))
    failed(other_org, *days_ago(6, 5, 4))
    outcomes.record_heartbeat(phone=PHONE, at=NOW - 10 * DAY)  # reported after newer errors
    assert NumberFacts.objects.get(phone=PHONE).errors_since_heartbeat == 3
    assert verdict(org) is None
    failed(other_org, *days_ago(3, 2, 1))
    assert verdict(org) == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT


def test_an_older_heartbeat_reported_late_changes_nothing(org, other_org):
    outcomes.record_heartbeat(phone=PHONE, at=NOW - 30 * DAY)
    failed(org, *days_ago(10, 9, 8))
    failed(other_org, *days_ago(7, 6, 5))
    outcomes.record_heartbeat(phone=PHONE, at=NOW - 40 * DAY)
    assert verdict(org) == SkipReason.GLOBAL_LIFETIME_ERROR_COUNT


# The set and the single recipient agree; the counts add up --------------------------------------


@pytest.fixture
def mixed_contacts(org, other_org, owner):
    """One contact in each state of SPEC §5, plus two sendable ones and one in another org."""
    now = timezone.now()
    contacts = {
        "sendable": make_contact(org, "+12125550100"),
        "also_sendable": make_contact(org, "(212) 555-0101"),
        "opted_out": make_contact(org, "+12125550102"),
        "marked_invalid": make_contact(org, "+12125550103"),
        "pending_review": make_contact(org, "+12125550104"),
        "invalid_number": make_contact(org, "n/a"),
        "missing": make_contact(org, ""),
        "landline": make_contact(org, "+12125550105"),
        "paused": make_contact(org, "+12125550106"),
        "recent_errors": make_contact(org, "+12125550107"),
        "global": make_contact(org, "+12125550108"),
        "elsewhere": make_contact(other_org, "+12125550109"),
    }
    phone = {key: contact.phone_e164 for key, contact in contacts.items()}
    NumberState.objects.of(org=org, phone=phone["opted_out"]).opt_out(reason="staff", by=owner)
    NumberState.objects.of(org=org, phone=phone["marked_invalid"]).mark_invalid(by=owner)
    possible_opt_out(org, phone["pending_review"])
    NumberFacts.objects.create(phone=phone["landline"], line_type="landline")
    NumberState.objects.of(org=org, phone=phone["paused"]).pause(until=now + DAY, by=owner)
    failed(org, *days_ago(5, 4, 3, 2, 1, now=now), phone=phone["recent_errors"])
    failed(other_org, *days_ago(6, 5, 4, 3, 2, 1, now=now), phone=phone["global"])
    NumberState.objects.of(org=other_org, phone=phone["elsewhere"]).opt_out(
        reason="staff", by=owner
    )
    return contacts


@pytest.mark.parametrize("is_test", [False, True])
def test_check_number_agrees_with_check_contacts(org, mixed_contacts, is_test):
    rows = eligibility.check_contacts(Contact.objects.all(), org=org, is_test=is_test)
    found = {row.pk: row.skip_reason for row in rows}
    assert mixed_contacts["elsewhere"].pk not in found  # another org's contacts never show
    assert len(found) == len(mixed_contacts) - 1
    for contact in Contact.objects.filter(pk__in=found):
        assert (
            eligibility.check_number(
                org=org, phone=contact.phone_raw, is_test=is_test, broadcast=True
            )
            == found[contact.pk]
        ), contact.phone_raw
    if not is_test:
        assert found[mixed_contacts["recent_errors"].pk] == "recent_errors"
        assert found[mixed_contacts["global"].pk] == "global_lifetime_error_count"


def test_skip_counts_add_up_to_the_recipients(org, mixed_contacts):
    counts = eligibility.skip_counts(Contact.objects.all(), org=org)
    assert counts == {
        "sendable": 2,
        "opted_out": 1,
        "pending_review": 1,
        "marked_invalid": 1,
        "invalid_number": 2,
        "landline": 1,
        "paused": 1,
        "recent_errors": 1,
        "global_lifetime_error_count": 1,
        "duplicate_number": 0,
    }
    assert sum(counts.values()) == Contact.objects.filter(organization=org).count()
    test_counts = eligibility.skip_counts(Contact.objects.all(), org=org, is_test=True)
    assert sum(test_counts.values()) == Contact.objects.filter(organization=org).count()
    assert test_counts["sendable"] == 7  # a Sample Text ignores pending_review too


def test_skip_counts_of_nobody_are_all_zero(org):
    counts = eligibility.skip_counts(Contact.objects.none(), org=org)
    assert set(counts) == {"sendable", *SkipReason.values}
    assert sum(counts.values()) == 0


# Set-based: the number of queries does not grow with the recipients ----------------------------


def add_recipients(org, owner, start, stop):
    """Contacts start..stop-1, every tenth one in some state, so that the subqueries find rows."""
    contacts = []
    for n in range(start, stop):
        contact = Contact(organization=org, first_name="Member", last_name=str(n))
        contact.set_phone(f"+1646555{n:04d}")
        contacts.append(contact)
    Contact.objects.bulk_create(contacts)
    for n in range(start, stop, 10):
        phone = f"+1646555{n:04d}"
        if n % 30 == 0:
            NumberState.objects.of(org=org, phone=phone).opt_out(reason="staff", by=owner)
        elif n % 30 == 10:
            failed(org, *days_ago(5, 4, 3, 2, 1), phone=phone)
        else:
            NumberFacts.objects.create(phone=phone, line_type="landline")


def queries_to_check(org):
    with CaptureQueriesContext(connection) as counted:
        eligibility.skip_counts(Contact.objects.all(), org=org, now=NOW)
        list(eligibility.check_contacts(Contact.objects.all(), org=org, now=NOW))
    return len(counted.captured_queries)


def test_the_number_of_queries_does_not_grow_with_recipients(org, owner, django_assert_num_queries):
    add_recipients(org, owner, 0, 10)
    with django_assert_num_queries(1):
        eligibility.skip_counts(Contact.objects.all(), org=org, now=NOW)
    with django_assert_num_queries(1):
        assert len(list(eligibility.check_contacts(Contact.objects.all(), org=org, now=NOW))) == 10
    for_ten = queries_to_check(org)

    add_recipients(org, owner, 10, 300)
    with django_assert_num_queries(1):
        counts = eligibility.skip_counts(Contact.objects.all(), org=org, now=NOW)
    with django_assert_num_queries(1):
        rows = list(eligibility.check_contacts(Contact.objects.all(), org=org, now=NOW))
    assert queries_to_check(org) == for_ten
    assert len(rows) == sum(counts.values()) == 300
    assert counts["opted_out"] == 10 and counts["landline"] == 10
    assert counts["recent_errors"] == 10


# Random histories against a reference model ----------------------------------------------------

WINDOW = timedelta(days=80)
OUTCOMES = ("error", "delivered", "sent")
PHONES = ["+12125550161", "+12125550162", "+12125550163"]


@dataclass(frozen=True)
class Event:
    at: datetime
    org: str  # "a" or "b"
    phone: str
    kind: str  # an outcome of an attempt, "inbound", or a state change
    code: int = 30003
    reason: str = ""
    until: datetime | None = None


def reference(applied, *, org, phone, now, is_test):
    """SPEC §5 read literally over the raw history, in the order the events were applied."""
    mine = [e for e in applied if e.phone == phone]
    here = [e for e in mine if e.org == org]
    opted_out, invalid, paused_until = False, False, None
    for e in here:
        if e.kind == "opt_out":
            opted_out, paused_until = True, None  # an opt-out ends a pause
        elif e.kind == "invalid":
            invalid = True
        elif e.kind == "pause" and not opted_out:  # an opted-out number cannot be paused
            paused_until = e.until
    if opted_out:
        return "opted_out"
    if invalid:
        return "marked_invalid"
    if is_test:
        return None
    # Nothing in these histories looks the line type up, and every number parses.
    if paused_until is not None and paused_until > now:
        return "paused"

    # recent_errors: 5 or more consecutive errors in this org since its last sent/delivered,
    # within the last 80 days; a number not attempted here for 80 days gets a new attempt.
    attempts_here = [e for e in here if e.kind in OUTCOMES]
    last_success = max((e.at for e in attempts_here if e.kind != "error"), default=None)
    streak = [
        e for e in attempts_here if e.kind == "error" and (not last_success or e.at > last_success)
    ]
    in_window = [e for e in streak if e.at >= now - WINDOW]
    last_here = max((e.at for e in attempts_here), default=None)
    if len(in_window) >= 5 and not (last_here and last_here <= now - WINDOW):
        return "recent_errors"

    # global: more than 5 errors in every org since the latest heartbeat (a delivery anywhere
    # or an inbound message); a number not attempted anywhere for 80 days gets a new attempt.
    heartbeat = max((e.at for e in mine if e.kind in ("delivered", "inbound")), default=None)
    since = [e for e in mine if e.kind == "error" and (not heartbeat or e.at > heartbeat)]
    last_anywhere = max((e.at for e in mine if e.kind in OUTCOMES), default=None)
    if len(since) > 5 and not (last_anywhere and last_anywhere <= now - WINDOW):
        return "global_lifetime_error_count"
    return None


def apply(event, *, orgs, staff):
    org = orgs[event.org]
    if event.kind in OUTCOMES:
        outcomes.record_attempts(org=org, phones=[event.phone], at=event.at)
    if event.kind == "error":
        outcomes.record_number_error(org=org, phone=event.phone, at=event.at, code=event.code)
    elif event.kind in ("delivered", "sent"):
        outcomes.record_success(
            org=org, phone=event.phone, at=event.at, delivered=event.kind == "delivered"
        )
    elif event.kind == "inbound":
        outcomes.record_heartbeat(phone=event.phone, at=event.at)
    elif event.kind == "opt_out":
        state = NumberState.objects.of(org=org, phone=event.phone)
        if not state.is_opted_out:
            by = staff if event.reason == OptOutReason.STAFF else None
            NumberState.objects.of(org=org, phone=event.phone).opt_out(reason=event.reason, by=by)
    elif (
        event.kind == "invalid"
        and not NumberState.objects.of(org=org, phone=event.phone).is_invalid
    ):
        NumberState.objects.of(org=org, phone=event.phone).mark_invalid(by=staff)
    elif (
        event.kind == "pause"
        and not NumberState.objects.of(org=org, phone=event.phone).is_opted_out
    ):
        NumberState.objects.of(org=org, phone=event.phone).pause(until=event.until, by=staff)


KINDS = ["error"] * 10 + ["delivered", "sent", "inbound"] * 2 + ["opt_out", "invalid", "pause"]

# Whole hours, so that "exactly 80 days" happens. Mostly close together, sometimes weeks apart:
# histories reach the thresholds and cross the 80-day window.
gaps = st.one_of(st.integers(1, 72), st.integers(1, 40 * 24))
# When the checks run: soon after the last event, long after, or around the 80-day marks.
laters = st.one_of(st.integers(0, 10 * 24), st.integers(0, 130 * 24), st.integers(76 * 24, 84 * 24))

raw_events = st.lists(
    st.tuples(
        gaps,  # hours since the previous event
        st.sampled_from(["a", "a", "b"]),
        st.sampled_from([0, 0, 0, 1, 2]),  # mostly one number, so that errors pile up
        st.sampled_from(KINDS),
        st.integers(min_value=1, max_value=6),  # an error comes in a run of this many, hourly
        st.sampled_from(UNREACHABLE),
        st.sampled_from(OptOutReason.values),
        st.integers(min_value=2, max_value=29 * 24),  # a pause lasts this many hours
    ),
    max_size=25,
)


def build_history(raw, base):
    """Events at increasing times, the last one at `base` (now, give or take an hour: a pause
    is made from the real clock)."""
    at, events = base, []
    for gap, org, phone, kind, run, code, reason, pause_hours in raw:
        at += timedelta(hours=gap)
        until = base + timedelta(hours=pause_hours) if kind == "pause" else None
        for _ in range(run if kind == "error" else 1):
            events.append(Event(at, org, PHONES[phone], kind, code, reason, until))
            at += timedelta(hours=1)
    shift = (events[-1].at - base) if events else timedelta(0)
    return [replace(e, at=e.at - shift) for e in events]


def compare_with_the_reference(applied, *, orgs, now, is_test):
    """Every (org, number) pair: the checks, one number and a set of contacts, vs the model."""
    for key, org in orgs.items():
        for phone in PHONES:
            make_contact(org, phone)
        rows = eligibility.check_contacts(Contact.objects.all(), org=org, now=now, is_test=is_test)
        by_phone = dict(rows.values_list("phone_e164", "skip_reason"))
        for phone in PHONES:
            expected = reference(applied, org=key, phone=phone, now=now, is_test=is_test)
            got = eligibility.check_number(org=org, phone=phone, now=now, is_test=is_test)
            hypothesis.event(f"verdict: {expected}")
            assert (key, phone, got) == (key, phone, expected)
            assert by_phone[phone] == expected


hypothesis_settings = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@hypothesis_settings
@given(
    raw=raw_events,
    later=laters,  # hours after the last event
    is_test=st.booleans(),
    data=st.data(),
)
def test_the_checks_agree_with_the_reference_model(
    org, other_org, owner, raw, later, is_test, data
):
    """Random histories, applied in the order of their times or, as status callbacks and
    replies arrive late and out of order (SPEC §6), shuffled: each outcome still carries the
    time its send was attempted, so the verdict is the one the times give."""
    base = timezone.now().replace(minute=0, second=0, microsecond=0)
    events = build_history(raw, base)
    now = (events[-1].at if events else base) + timedelta(hours=later)
    if data.draw(st.booleans(), label="out of order"):
        order = data.draw(st.permutations(range(len(events))), label="order applied")
        applied = [events[i] for i in order]
    else:
        applied = events
    note(f"now={now.isoformat()} is_test={is_test}")
    with transaction.atomic():  # each example starts from an empty history
        for event in applied:
            apply(event, orgs={"a": org, "b": other_org}, staff=owner)
        compare_with_the_reference(
            applied, orgs={"a": org, "b": other_org}, now=now, is_test=is_test
        )
        transaction.set_rollback(True)


def test_the_reference_model_reads_the_spec_like_the_examples_above():
    """The model itself, on a few hand-made histories (a wrong model proves nothing)."""

    def history(*items):
        return [Event(NOW - d * DAY, org, PHONE, kind) for d, org, kind in items]

    def model(events, now=NOW):
        return reference(events, org="a", phone=PHONE, now=now, is_test=False)

    five = history(*[(d, "a", "error") for d in (5, 4, 3, 2, 1)])
    assert model(five) == "recent_errors"
    assert model(five[1:]) is None
    assert model(history((6, "a", "delivered")) + five) == "recent_errors"
    assert model(five[:2] + history((3.5, "a", "sent")) + five[2:]) is None
    six = five + history((0.5, "b", "error"))
    sent_then_errors = five[:2] + history((3.5, "a", "sent")) + five[2:] + six[5:]
    assert model(sent_then_errors) == "global_lifetime_error_count"  # a sent is no heartbeat
    assert model(five[:2] + history((3.5, "b", "sent")) + five[2:]) == "recent_errors"
    assert model(history(*[(d, "b", "error") for d in (6, 5, 4, 3, 2, 1)])) == (
        "global_lifetime_error_count"
    )
    assert model(five, now=NOW + 75 * DAY) == "recent_errors"  # the oldest is 80 days old
    assert model(five, now=NOW + 76 * DAY) is None
    assert model(history((7, "a", "inbound")) + six) == "recent_errors"
    assert model(six + history((0.1, "b", "inbound"))) == "recent_errors"  # no sent/delivered
    elsewhere = history(*[(d, "b", "error") for d in (6, 5, 4, 3, 2, 1)])
    assert model(elsewhere + history((0.1, "a", "inbound"))) is None


def test_a_keyword_opt_in_brings_back_the_verdict_of_the_history(org):
    """The error history is kept while a number is opted out; START does not wipe it."""
    failed(org, *days_ago(5, 4, 3, 2, 1))
    NumberState.objects.of(org=org, phone=PHONE).opt_out(reason="deactivated")
    assert verdict(org) == SkipReason.OPTED_OUT
    NumberState.objects.of(org=org, phone=PHONE).opt_in(via=OptIn.KEYWORD, cause="inbound START")
    assert verdict(org) == SkipReason.RECENT_ERRORS
