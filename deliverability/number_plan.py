"""The simulator's number plan (SPEC §9): how a number behaves when we text or look it up.

Deterministic. Twilio's magic test numbers behave as Twilio documents them; the fictional
+1 NPA 555-0100…0199 range is split into behaviours by its last two digits. Any other number is
an ordinary mobile that gets its messages. The simulator SMS backend, the simulated lookups and
the simulated deactivation list all read this one table.

Lookup packages beyond the line type: with line status, 60–64 answer `inactive` (disconnected)
and 65–69 `unknown` (carrier coverage is never complete), every other number `active`; the
reassigned-number check answers `yes` for 45–49 when the consent date is more than 30 days old
(the number was given to someone else since), `no` otherwise.
"""

import re
from dataclasses import dataclass
from datetime import date, timedelta

# A number of the 45–49 block changed owners this long ago (SPEC §9).
REASSIGNED_AGO = timedelta(days=30)

MAGIC = {
    "+15005550001": 21211,  # invalid number
    "+15005550002": 21612,  # not reachable via SMS
    "+15005550003": 21408,  # no permission for the region
    "+15005550004": 21610,  # blocked by STOP
    "+15005550009": 21614,  # not a mobile number
}

FICTIONAL = re.compile(r"^\+1[2-9]\d{2}55501(\d{2})$")


@dataclass(frozen=True)
class PlanEntry:
    line_type: str = "mobile"
    carrier: str = "Simulated Wireless"
    create_error: int | None = None  # Twilio error raised by the create call itself.
    final_status: str = "delivered"
    final_error: int | None = None
    flaky: bool = False  # 30003 on every other attempt.
    deactivated: bool = False
    line_status: str = "active"  # What Lookup's line_status package answers.
    reassigned_recently: bool = False  # Changed owners REASSIGNED_AGO before today.


def plan_for(phone):
    """The behaviour of `phone` (E.164) under the simulator."""
    if phone in MAGIC:
        code = MAGIC[phone]
        line_type = "landline" if code == 21614 else "mobile"
        return PlanEntry(line_type=line_type, create_error=code, final_status="failed")
    match = FICTIONAL.match(phone or "")
    if not match:
        return PlanEntry()
    nn = int(match.group(1))
    if 45 <= nn < 50:
        return PlanEntry(reassigned_recently=True)
    if nn < 50:
        return PlanEntry()
    if nn < 60:
        return PlanEntry(
            line_type="landline",
            carrier="Simulated Telephone Co.",
            final_status="undelivered",
            final_error=30006,
        )
    if nn < 70:
        status = "inactive" if nn < 65 else "unknown"
        return PlanEntry(final_status="undelivered", final_error=30005, line_status=status)
    if nn < 80:
        return PlanEntry(flaky=True)
    if nn < 85:
        return PlanEntry(final_status="undelivered", final_error=30007)
    if nn < 90:
        return PlanEntry(line_type="nonFixedVoip", carrier="Simulated VoIP")
    if nn < 95:
        return PlanEntry(create_error=21610, final_status="failed")
    return PlanEntry(deactivated=True)


def reassigned_since(phone, last_verified, today=None):
    """The reassigned-number check's answer for `phone` given the consent date: "yes" when the
    number changed owners after `last_verified`, else "no"."""
    today = today or date.today()
    entry = plan_for(phone)
    if entry.reassigned_recently and last_verified < today - REASSIGNED_AGO:
        return "yes"
    return "no"


# The account's message history (for the Twilio history import) ------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    """One message between a number and its organization's first sender, `days_ago` days
    before today at `at` past midnight UTC."""

    days_ago: int
    at: timedelta
    inbound: bool
    body: str
    status: str
    error_code: int | None = None


def _out(days_ago, status="delivered", error_code=None, hour=15):
    body = "Reminder: your class starts at 6pm."
    return HistoryEntry(days_ago, timedelta(hours=hour), False, body, status, error_code)


def _in(days_ago, body, hour=16):
    return HistoryEntry(days_ago, timedelta(hours=hour), True, body, "received")


def history_for(phone):
    """What the simulated account's Messages list holds for `phone`, oldest first (SPEC §9):
    deliveries for ordinary numbers, the plan's failures where the plan fails, and an inbound
    STOP from 90–94 before their carrier STOP (21610). Magic numbers have no history."""
    if phone in MAGIC:
        return []
    match = FICTIONAL.match(phone or "")
    nn = int(match.group(1)) if match else None
    if nn is None or nn < 50 or 85 <= nn < 90:
        return [_out(40), _out(12)]
    if nn < 60:
        return [_out(12, "undelivered", 30006)]
    if nn < 70:
        return [_out(40), _out(12, "undelivered", 30005)]
    if nn < 80:
        return [_out(40), _out(12, "undelivered", 30003)]
    if nn < 85:
        return [_out(40), _out(12, "undelivered", 30007)]
    if nn < 95:
        return [_out(40), _in(20, "STOP"), _out(12, "failed", 21610)]
    return [_out(120)]


HISTORY_DAYS_AGO = (120, 40, 20, 12)
