"""The pre-send checks (SPEC §5): whether a message may go to a number, or why it is skipped.

One SQL expression decides, for any number of recipients at once: `skip_reason_expression`
annotates a queryset with the first applicable skip reason (or NULL when sendable), reading
NumberState and NumberFacts through correlated subqueries. The number of queries never grows with
the number of recipients. The single-recipient form used by the send path (`check_number`)
runs the same expression over a one-row queryset.

Three kinds of message take different checks: a broadcast also waits for a pending opt-out
review (pending_review); a Sample Text takes only opted_out and marked_invalid; an automatic
reply (HELP, the opt-out confirmation) only marked_invalid and a carrier STOP.

A broadcast sends one text per number: among its recipients sharing an E.164 number, the one
with the lowest id is checked as usual and the others are skipped as duplicate_number (last in
the order, so a recipient skipped for an earlier reason keeps it). The number's state is the
same for all of them, so the first is the one that would be sendable.
"""

from collections import Counter

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    DateTimeField,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber
from django.utils import timezone

from contacts.models import Contact, Organization
from contacts.phones import parse_phone
from deliverability.models import (
    ERROR_WINDOW,
    GLOBAL_ERRORS_THRESHOLD,
    NOT_SMS_CAPABLE,
    RECENT_ERRORS_THRESHOLD,
    RETRY_AFTER,
    NumberFacts,
    NumberState,
    OptOutReason,
    ReviewItem,
    SkipReason,
)


def _state_field(org, phone_ref, field, output):
    state = NumberState.objects.filter(organization=org, phone=OuterRef(phone_ref))
    return Subquery(state.values(field)[:1], output_field=output)


def _facts_field(phone_ref, field, output):
    facts = NumberFacts.objects.filter(phone=OuterRef(phone_ref))
    return Subquery(facts.values(field)[:1], output_field=output)


def annotate_skip_reason(
    queryset,
    *,
    org,
    phone_ref,
    valid_phone,
    now=None,
    is_test=False,
    broadcast=False,
    auto_reply=False,
    duplicate=None,
    name="skip_reason",
):
    """Annotate `queryset` with `skip_reason` (or `name`, on a model that has a skip_reason of
    its own): the first reason of SPEC §5, or None to send.

    `phone_ref` names the E.164 column of the queryset; `valid_phone` is a Q telling whether the
    row's number parsed to a valid destination. A test message ("Sample Text") skips every
    check but the opt-out and the Invalid flag; only a broadcast waits for a pending review;
    an automatic reply is held back only by the Invalid flag and a carrier STOP. `duplicate`,
    when given, is a Q telling that another row has the row's number: it is checked last.
    """
    now = now or timezone.now()
    text, stamp, number = CharField(), DateTimeField(), IntegerField()
    queryset = queryset.annotate(
        _opt_out=_state_field(org, phone_ref, "opt_out_reason", text),
        _invalid=_state_field(org, phone_ref, "invalid_source", text),
    )
    flagged = When(
        Q(_invalid__isnull=False) & ~Q(_invalid=""), then=Value(SkipReason.MARKED_INVALID)
    )
    if auto_reply:
        carrier_stop = When(_opt_out=OptOutReason.CARRIER_STOP, then=Value(SkipReason.OPTED_OUT))
        return queryset.annotate(
            **{name: Case(carrier_stop, flagged, default=Value(None), output_field=text)}
        )
    whens = [When(Q(_opt_out__isnull=False) & ~Q(_opt_out=""), then=Value(SkipReason.OPTED_OUT))]
    if broadcast and not is_test:
        pending = ReviewItem.objects.pending_opt_outs().filter(
            organization=org, phone=OuterRef(phone_ref)
        )
        queryset = queryset.annotate(_pending_review=Exists(pending))
        whens.append(When(_pending_review=True, then=Value(SkipReason.PENDING_REVIEW)))
    whens.append(flagged)
    if not is_test:
        queryset = queryset.annotate(
            _line_type=_facts_field(phone_ref, "line_type", text),
            _paused_until=_state_field(org, phone_ref, "paused_until", stamp),
            _streak=_state_field(org, phone_ref, "error_streak", number),
            _fifth_error=_state_field(org, phone_ref, "streak_fifth_error_at", stamp),
            _org_attempt=_state_field(org, phone_ref, "last_attempt_at", stamp),
            _global_errors=_facts_field(phone_ref, "errors_since_heartbeat", number),
            _global_attempt=_facts_field(phone_ref, "last_attempt_at", stamp),
        )
        # "Not attempted for 80 days or more" earns one new attempt from the error rules.
        org_recent = Q(_org_attempt__isnull=True) | Q(_org_attempt__gt=now - RETRY_AFTER)
        global_recent = Q(_global_attempt__isnull=True) | Q(_global_attempt__gt=now - RETRY_AFTER)
        whens += [
            When(~valid_phone, then=Value(SkipReason.INVALID_NUMBER)),
            When(_line_type__in=list(NOT_SMS_CAPABLE), then=Value(SkipReason.LANDLINE)),
            When(_paused_until__gt=now, then=Value(SkipReason.PAUSED)),
            When(
                Q(_streak__gte=RECENT_ERRORS_THRESHOLD, _fifth_error__gte=now - ERROR_WINDOW)
                & org_recent,
                then=Value(SkipReason.RECENT_ERRORS),
            ),
            When(
                Q(_global_errors__gt=GLOBAL_ERRORS_THRESHOLD) & global_recent,
                then=Value(SkipReason.GLOBAL_LIFETIME_ERROR_COUNT),
            ),
        ]
    else:
        whens.append(When(~valid_phone, then=Value(SkipReason.INVALID_NUMBER)))
    if duplicate is not None:
        whens.append(When(duplicate, then=Value(SkipReason.DUPLICATE_NUMBER)))
    return queryset.annotate(**{name: Case(*whens, default=Value(None), output_field=text)})


def check_contacts(contacts, *, org, now=None, is_test=False):
    """The org's `contacts` queryset annotated with skip_reason (None: sendable), as the
    recipients of a broadcast (or, with is_test, of a Sample Text).

    Each number gets one text: the window numbers the recipients of each E.164 number by id,
    over the rows the queryset selects, so any later one is a duplicate_number.
    """
    duplicate = None
    if not is_test:
        contacts = contacts.annotate(
            _number_rank=Window(RowNumber(), partition_by="phone_e164", order_by="id")
        )
        duplicate = Q(_number_rank__gt=1) & ~Q(phone_e164="")
    return annotate_skip_reason(
        contacts.filter(organization=org),
        org=org,
        phone_ref="phone_e164",
        valid_phone=Q(phone_status=Contact.PhoneStatus.VALID),
        now=now,
        is_test=is_test,
        broadcast=True,
        duplicate=duplicate,
    )


def skip_counts(contacts, *, org, now=None, is_test=False):
    """{"sendable": n, <skip reason>: n, ...} for the broadcast preview: one query.

    The verdicts hold a window function, which SQL cannot group by in the same query: they
    are counted by an outer query over the checked rows.
    """
    checked = check_contacts(contacts, org=org, now=now, is_test=is_test).order_by()
    try:
        sql, params = checked.values("skip_reason").query.sql_with_params()
    except EmptyResultSet:  # An audience that can match nobody (e.g. `.none()`).
        sql = None
    rows = []
    if sql is not None:
        with connections[checked.db].cursor() as cursor:
            cursor.execute(
                f"SELECT checked.skip_reason, COUNT(*) FROM ({sql}) checked GROUP BY 1", params
            )
            rows = cursor.fetchall()
    counts = Counter()
    for reason, n in rows:
        counts[reason or "sendable"] += n
    return {"sendable": counts.get("sendable", 0)} | {
        reason: counts.get(reason, 0) for reason in SkipReason.values
    }


def check_number(*, org, phone, now=None, is_test=False, broadcast=False, auto_reply=False):
    """The single-recipient form for the send path: a skip reason for `phone`, or None.

    `phone` may be anything entered; it is parsed first (an unusable number is invalid_number,
    unless the opt-out or Invalid flag of the same text applies first).
    """
    parsed = parse_phone(phone, org.default_region)
    e164 = parsed.e164 or parsed.raw
    one_row = Organization.objects.filter(pk=org.pk).annotate(
        _phone=Value(e164, output_field=CharField()),
        _valid=Value(parsed.is_valid, output_field=BooleanField()),
    )
    row = annotate_skip_reason(
        one_row,
        org=org,
        phone_ref="_phone",
        valid_phone=Q(_valid=True),
        now=now,
        is_test=is_test,
        broadcast=broadcast,
        auto_reply=auto_reply,
    ).values_list("skip_reason", flat=True)
    return row.first()
