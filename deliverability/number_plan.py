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
