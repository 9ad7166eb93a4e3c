"""The cost ledger: what sending cost, what failed sends wasted, and what skipping saved.

A message costs its segments times the price of a segment for its sender's kind (long code,
toll-free, short code; 10DLC is a long code) plus the carriers' fee per segment, from settings
that default to Twilio's US list prices (README, configuration). When a status fetch brought
Twilio's own price of the message, that price is used instead. A message Twilio accepted and
then marked failed costs the failed-message fee; one refused at the create call cost nothing.

Saved by skipping counts only the recipients skipped because the message could not have been
delivered (SAVING_SKIP_REASONS). People skipped for consent or by staff choice (opted out, a
reply waiting for review, paused) are never counted: not texting them is the law or a decision,
not a saving.

Amounts are Decimal, in USD; pages round them for display (the `money` filter).
"""

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum

from deliverability.models import SkipReason

ZERO = Decimal(0)

SAVING_SKIP_REASONS = (
    SkipReason.MARKED_INVALID,  # a failed send's flag (30005, 21614, disconnected) or staff's
    SkipReason.INVALID_NUMBER,
    SkipReason.LANDLINE,
    SkipReason.RECENT_ERRORS,
    SkipReason.GLOBAL_LIFETIME_ERROR_COUNT,
    SkipReason.DUPLICATE_NUMBER,
)

DELIVERED = ("delivered", "read", "partially_delivered", "sent")  # sent: no later status yet
UNDELIVERED = "undelivered"  # the carrier took it and could not deliver it: charged in full
FAILED = "failed"  # Twilio could not send it: the failed-message fee, if Twilio accepted it


def segment_price(kind):
    """What one segment costs from a sender of `kind` (a conversations Sender.Kind value)."""
    base = {
        "toll_free": settings.SMS_PRICE_TOLL_FREE,
        "short_code": settings.SMS_PRICE_SHORT_CODE,
    }.get(kind, settings.SMS_PRICE_LONG_CODE)
    return base + settings.SMS_CARRIER_FEE


def skip_savings(*, skipped, segments, kind):
    """What not sending to the undeliverable recipients of `skipped` ({reason: count}) saves."""
    count = sum(n for reason, n in skipped.items() if reason in SAVING_SKIP_REASONS)
    return count * max(segments, 1) * segment_price(kind)


@dataclass
class Ledger:
    delivered: Decimal = ZERO  # spent on messages that arrived (or were sent, no report yet)
    wasted: Decimal = ZERO  # spent on messages that failed or were undelivered
    saved: Decimal = ZERO  # not spent: skipped because they could not have been delivered
    lookups: Decimal = ZERO  # spent on number lookups
    counts: dict = field(default_factory=lambda: {"delivered": 0, "wasted": 0, "saved": 0})

    @property
    def spent(self):
        return self.delivered + self.wasted + self.lookups

    def add(self, row):
        """Add one aggregate row of `message_rows` to this ledger."""
        unit = segment_price(row["sender__kind"])
        priced = row["priced"] or ZERO
        unpriced_segments = (row["segment_total"] or 0) - (row["priced_segments"] or 0)
        status = row["status"]
        if status in DELIVERED:
            self.delivered += priced + unpriced_segments * unit
            self.counts["delivered"] += row["n"]
        elif status == UNDELIVERED:
            self.wasted += priced + unpriced_segments * unit
            self.counts["wasted"] += row["n"]
        elif status == FAILED:
            self.wasted += priced + row["accepted_unpriced"] * settings.SMS_FAILED_MESSAGE_FEE
            self.counts["wasted"] += row["n"]
        elif row["skip_reason"] in SAVING_SKIP_REASONS:
            self.saved += (row["segment_total"] or 0) * unit
            self.counts["saved"] += row["n"]


def message_rows(messages, *by):
    """Outbound messages that cost or saved something, summed by `by` and what prices them."""
    counted = Q(status__in=[*DELIVERED, UNDELIVERED, FAILED]) | Q(
        status="skipped", skip_reason__in=SAVING_SKIP_REASONS
    )
    return (
        messages.filter(counted, direction="outbound")
        .values(*by, "status", "skip_reason", "sender__kind")
        .annotate(
            n=Count("id"),
            segment_total=Sum("segments"),
            priced=Sum("price"),
            priced_segments=Sum("segments", filter=Q(price__isnull=False)),
            accepted_unpriced=Count("id", filter=Q(price__isnull=True, provider_sid__isnull=False)),
        )
        .order_by()
    )


def broadcast_ledger(broadcast):
    """What a broadcast cost, wasted and saved (one query)."""
    ledger = Ledger()
    for row in message_rows(broadcast.messages.all()):
        ledger.add(row)
    return ledger


def totals(months):
    total = Ledger()
    for ledger in months.values():
        total.delivered += ledger.delivered
        total.wasted += ledger.wasted
        total.saved += ledger.saved
        total.lookups += ledger.lookups
        for key, n in ledger.counts.items():
            total.counts[key] += n
    return total


def money_text(amount):
    """A Decimal amount in USD rounded to the cent for reading: "$1,234.57"; an amount that
    rounds to nothing but is not nothing reads "under $0.01"."""
    if amount is None or amount == "":
        return ""
    amount = Decimal(amount)
    if 0 < amount < Decimal("0.005"):
        return "under $0.01"
    cents = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"${cents:,.2f}"


def money_short(amount):
    """As money_text, shorter, for a chart's labels: "<$0.01" for what rounds to nothing."""
    text = money_text(amount)
    return "<$0.01" if text == "under $0.01" else text
