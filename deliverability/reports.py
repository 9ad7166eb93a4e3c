"""Reports (SPEC §7): opt-out reasons, list health, delivery, staff activity.

Everything is aggregated in the database over an indexed range of one org's rows; each function
returns plain data that the page draws as a chart and a table, and the CSV export writes out.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import TruncDate
from django.utils import timezone

from conversations.models import Message
from deliverability import catalogue
from deliverability.models import AuditEvent, OptOutReason
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


def period_from(params, org, today=None):
    """7, 30 or 90 days up to today, or a custom range (from/to), in the org's time zone."""
    tz = org.tzinfo
    today = today or timezone.localtime(timezone.now(), tz).date()
    key = params.get("period", "30")
    first = last = None
    if key == "custom":
        try:
            first = date.fromisoformat(params.get("from", ""))
            last = date.fromisoformat(params.get("to", ""))
        except ValueError:
            key = "30"
        else:
            if last < first:
                first, last = last, first
            first = max(first, last - timedelta(days=366))
    if key not in PERIODS and key != "custom":
        key = "30"
    if key in PERIODS:
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
    counts = list_health(org)
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


def delivery(org, period):
    """Per day: sent, delivered, failed; the delivery rate; failures by reason; top numbers."""
    outbound = Message.objects.filter(
        organization=org,
        direction=Message.Direction.OUTBOUND,
        created_at__gte=period.start,
        created_at__lt=period.end,
    )
    per_day = (
        outbound.exclude(status=Message.Status.SKIPPED)
        .annotate(day=TruncDate("created_at", tzinfo=org.tzinfo))
        .values("day")
        .annotate(
            attempted=Count("id"),
            delivered=Count("id", filter=Q(status__in=["delivered", "read"])),
            failed=Count("id", filter=Q(status__in=["failed", "undelivered"])),
        )
        .order_by("day")
    )
    by_day = {row["day"]: row for row in per_day}
    days = []
    for day in period.each_day():
        row = by_day.get(day, {"attempted": 0, "delivered": 0, "failed": 0})
        finished = row["delivered"] + row["failed"]
        rate = round(100 * row["delivered"] / finished, 1) if finished else None
        days.append(
            {"day": day, **{k: row[k] for k in ("attempted", "delivered", "failed")}, "rate": rate}
        )
    failures = (
        outbound.filter(status__in=["failed", "undelivered"])
        .values("error_code")
        .annotate(n=Count("id"))
        .order_by("-n")
    )
    reasons = [
        {
            "code": row["error_code"],
            "reason": catalogue.describe(row["error_code"]).reason
            if row["error_code"]
            else "No code",
            "category": catalogue.describe(row["error_code"]).category.value
            if row["error_code"]
            else "",
            "count": row["n"],
        }
        for row in failures
    ]
    top_numbers = list(
        outbound.filter(status__in=["failed", "undelivered"])
        .values("to_number")
        .annotate(n=Count("id"))
        .order_by("-n", "to_number")[:10]
    )
    totals = {
        "attempted": sum(d["attempted"] for d in days),
        "delivered": sum(d["delivered"] for d in days),
        "failed": sum(d["failed"] for d in days),
    }
    finished = totals["delivered"] + totals["failed"]
    totals["rate"] = round(100 * totals["delivered"] / finished, 1) if finished else None
    return {"days": days, "reasons": reasons, "top_numbers": top_numbers, "totals": totals}


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
