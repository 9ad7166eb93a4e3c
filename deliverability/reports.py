"""Reports (SPEC §7): opt-out reasons, list health, delivery, staff activity.

Everything is aggregated in the database over an indexed range of one org's rows; each function
returns plain data that the page draws as a chart and a table, and the CSV export writes out.
"""

import contextlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import TruncDate, TruncMonth
from django.utils import timezone

from contacts.queries import cached_counts
from conversations.models import Message
from deliverability import catalogue, costs
from deliverability.models import AuditEvent, NumberLookup, OptOutReason
from deliverability.queries import list_health

PERIODS = {"7": 7, "30": 30, "90": 90}
STAFF_ACTIONS = [
    AuditEvent.Action.MARK_INVALID,
    AuditEvent.Action.MARK_VALID,
    AuditEvent.Action.OPT_OUT,
    AuditEvent.Action.OPT_IN,
    AuditEvent.Action.PAUSE,
    AuditEvent.Action.RESUME,
    AuditEvent.Action.RECHECK,
    AuditEvent.Action.AUTO_VALID,
    AuditEvent.Action.PHONE_CHANGED,
    AuditEvent.Action.REVIEW_DISMISSED,
    AuditEvent.Action.REVIEW_CONFIRMED,
    AuditEvent.Action.REVIEW_KEPT_OPTED_OUT,
    AuditEvent.Action.REVIEW_UNDONE,
]


@dataclass(frozen=True)
class Period:
    key: str
    first_day: date
    last_day: date
    start: datetime  # aware, inclusive
    end: datetime  # aware, exclusive

    @property
    def days(self):
        return (self.last_day - self.first_day).days + 1

    def each_day(self):
        return [self.first_day + timedelta(days=n) for n in range(self.days)]


def report_period(org, key, first=None, last=None, today=None):
    """7, 30 or 90 days up to today, or the custom range first–last (as ReportPeriodForm
    checked it), in the org's time zone."""
    tz = org.tzinfo
    if key != "custom":
        today = today or timezone.localtime(timezone.now(), tz).date()
        last = today
        first = today - timedelta(days=PERIODS[key] - 1)
    start = datetime.combine(first, time.min, tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=tz)
    return Period(key, first, last, start, end)


def opt_out_reasons(org, period):
    """Opt-outs made in the period by reason, with shares (Listrak's "Opt-Out Reasons")."""
    rows = (
        AuditEvent.objects.filter(
            organization=org,
            action=AuditEvent.Action.OPT_OUT,
            created_at__gte=period.start,
            created_at__lt=period.end,
        )
        .annotate(reason=KeyTextTransform("opt_out_reason", "after"))
        .values("reason")
        .annotate(n=Count("id"))
    )
    counts = {row["reason"]: row["n"] for row in rows}
    total = sum(counts.values())
    return {
        "total": total,
        "rows": [
            {
                "reason": value,
                "label": label,
                "count": counts.get(value, 0),
                "share": round(100 * counts.get(value, 0) / total, 1) if total else 0.0,
            }
            for value, label in OptOutReason.choices
        ],
    }


def health(org):
    counts = cached_counts(org, "health", lambda: list_health(org))
    total = counts["total"] or 1
    labels = [
        ("total", "Total contacts"),
        ("subscribed", "Subscribed (paused included)"),
        ("sendable", "Sendable"),
        ("opted_out", "Opted out"),
        ("invalid_manual", "Invalid (manual)"),
        ("invalid_automatic", "Invalid (automatic)"),
        ("invalid_number", "Unusable number as entered"),
        ("landline", "Landline"),
        ("paused", "Paused"),
    ]
    return [
        {
            "key": key,
            "label": label,
            "count": counts[key],
            "share": round(100 * counts[key] / total, 1),
        }
        for key, label in labels
    ]


SETTLED_AFTER_DAYS = 2  # late callbacks still arrive for a day or so; older days are settled
DAY_SUMMARY_TTL = 14 * 86400


def _day_rows(org, first_day, last_day):
    """{day: {"attempted", "delivered", "failed", "reasons": {code: n}}} from the messages."""
    start = datetime.combine(first_day, time.min, tzinfo=org.tzinfo)
    end = datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=org.tzinfo)
    rows = (
        Message.objects.filter(
            organization=org,
            direction=Message.Direction.OUTBOUND,
            created_at__gte=start,
            created_at__lt=end,
        )
        .exclude(status=Message.Status.SKIPPED)
        .annotate(day=TruncDate("created_at", tzinfo=org.tzinfo))
        .values("day", "status", "error_code")
        .annotate(n=Count("id"))
        .order_by()
    )
    days = {}
    for row in rows:
        day = days.setdefault(
            row["day"], {"attempted": 0, "delivered": 0, "failed": 0, "reasons": {}}
        )
        day["attempted"] += row["n"]
        if row["status"] in Message.Status.DELIVERED_OR_READ:
            day["delivered"] += row["n"]
        elif row["status"] in Message.Status.FAILED_OR_UNDELIVERED:
            day["failed"] += row["n"]
            code = str(row["error_code"] or "")
            day["reasons"][code] = day["reasons"].get(code, 0) + row["n"]
    return days


def _empty_day():
    return {"attempted": 0, "delivered": 0, "failed": 0, "reasons": {}}


def daily_summaries(org, period, today=None):
    """Per-day delivery figures. Settled days are summarised once and kept (a summary table
    in the cache): a 90-day report then reads only the last two days of messages."""
    today = today or timezone.localtime(timezone.now(), org.tzinfo).date()
    settled_until = today - timedelta(days=SETTLED_AFTER_DAYS)
    keys = {day: f"delivery-day:{org.pk}:{day.isoformat()}" for day in period.each_day()}
    settled = [day for day in keys if day < settled_until]
    try:
        found = cache.get_many([keys[day] for day in settled]) if settled else {}
    except Exception:  # The cache is optional.
        found = {}
    summaries = {day: found[keys[day]] for day in settled if keys[day] in found}
    missing = [day for day in settled if day not in summaries]
    if missing:
        computed = _day_rows(org, min(missing), max(missing))
        fresh = {day: computed.get(day, _empty_day()) for day in missing}
        summaries.update(fresh)
        with contextlib.suppress(Exception):
            cache.set_many({keys[day]: value for day, value in fresh.items()}, DAY_SUMMARY_TTL)
    recent = [day for day in keys if day >= settled_until]
    if recent:
        computed = _day_rows(org, min(recent), max(recent))
        summaries.update({day: computed.get(day, _empty_day()) for day in recent})
    return summaries


TOP_NUMBERS_TTL = 600


def top_failing_numbers(org, period):
    """The ten numbers with the most failures in the period; refreshed every ten minutes
    (grouping a quarter's failures takes a few hundred milliseconds at 1M messages)."""
    key = f"top-failing:{org.pk}:{period.first_day}:{period.last_day}"
    try:
        found = cache.get(key)
    except Exception:
        found = None
    if found is not None:
        return found
    found = list(
        Message.objects.filter(
            organization=org,
            status__in=Message.Status.FAILED_OR_UNDELIVERED,
            created_at__gte=period.start,
            created_at__lt=period.end,
        )
        .values("to_number")
        .annotate(n=Count("id"))
        .order_by("-n", "to_number")[:10]
    )
    with contextlib.suppress(Exception):
        cache.set(key, found, TOP_NUMBERS_TTL)
    return found


def delivery(org, period):
    """Per day: sent, delivered, failed; the delivery rate; failures by reason; top numbers."""
    summaries = daily_summaries(org, period)
    days, reasons = [], {}
    for day in period.each_day():
        row = summaries[day]
        finished = row["delivered"] + row["failed"]
        rate = round(100 * row["delivered"] / finished, 1) if finished else None
        days.append(
            {"day": day, **{k: row[k] for k in ("attempted", "delivered", "failed")}, "rate": rate}
        )
        for code, n in row["reasons"].items():
            reasons[code] = reasons.get(code, 0) + n
    by_reason = []
    for code, n in sorted(reasons.items(), key=lambda item: -item[1]):
        info = catalogue.describe(code or None)
        by_reason.append(
            {
                "code": int(code) if code.isdigit() else None,
                "reason": info.reason if code else "No code",
                "category": info.category.value if code else "",
                "count": n,
            }
        )
    top_numbers = top_failing_numbers(org, period)
    totals = {key: sum(d[key] for d in days) for key in ("attempted", "delivered", "failed")}
    finished = totals["delivered"] + totals["failed"]
    totals["rate"] = round(100 * totals["delivered"] / finished, 1) if finished else None
    return {"days": days, "reasons": by_reason, "top_numbers": top_numbers, "totals": totals}


def staff_activity(org, period, *, actor_id=None, action=""):
    """Who changed which number's state, when, from which page, and why."""
    events = AuditEvent.objects.filter(
        organization=org,
        actor__isnull=False,
        created_at__gte=period.start,
        created_at__lt=period.end,
    ).select_related("actor", "contact")
    if actor_id:
        events = events.filter(actor_id=actor_id)
    if action in AuditEvent.Action.values:
        events = events.filter(action=action)
    return events.order_by("-created_at", "-id")


# Costs (deliverability.costs prices them) -----------------------------------------------------


def costs_by_month(org, period):
    """{first day of month: Ledger} for every month of the report period, in the org's time
    zone: messages by the month they were created, lookups by the month they were made."""
    tz = org.tzinfo
    months = {}
    day = period.first_day.replace(day=1)
    while day <= period.last_day:
        months[day] = costs.Ledger()
        day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    messages = Message.objects.filter(
        organization=org, created_at__gte=period.start, created_at__lt=period.end
    ).annotate(month=TruncMonth("created_at", tzinfo=tz))
    for row in costs.message_rows(messages, "month"):
        months[_as_date(row["month"])].add(row)
    for month, spent in _lookups_by_month(org, period):
        months[month].lookups += spent
    return months


def _lookups_by_month(org, period):
    """What the org's lookups cost each month: every NumberLookup made for it, at the
    LOOKUP_PRICE_* price of each package it paid for."""
    paid = {
        "line_type": Q(paid_line_type=True),
        "line_status": Q(paid_line_status=True),
        "reassigned": Q(paid_reassigned=True),
    }
    rows = (
        NumberLookup.objects.filter(
            organization=org, looked_up_at__gte=period.start, looked_up_at__lt=period.end
        )
        .annotate(month=TruncMonth("looked_up_at", tzinfo=org.tzinfo))
        .values("month")
        .annotate(**{name: Count("id", filter=condition) for name, condition in paid.items()})
        .order_by()
    )
    prices = {
        "line_type": settings.LOOKUP_PRICE_LINE_TYPE,
        "line_status": settings.LOOKUP_PRICE_LINE_STATUS,
        "reassigned": settings.LOOKUP_PRICE_REASSIGNED,
    }
    return [
        (_as_date(row["month"]), sum(row[name] * price for name, price in prices.items()))
        for row in rows
    ]


def _as_date(moment):
    return moment.date() if hasattr(moment, "date") else moment
