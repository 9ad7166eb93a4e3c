"""The cost ledger (deliverability.costs): prices per segment and sender kind, what a broadcast
spent, wasted and saved, the preview's saving, the Costs report by month, Twilio's own price."""

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone

from config.settings import env_decimal
from conversations import broadcasts, reconciliation
from conversations.backends import RemoteMessage, get_backend
from conversations.models import Message, Sender
from deliverability import costs, reports
from deliverability.models import NumberFacts, NumberLookup, NumberState, ReviewItem, SkipReason
from tests.factories import make_contact, make_message, make_org, make_sender

HTMX = {"HX-Request": "true"}
LONG_CODE = Decimal("0.0083") + Decimal("0.003")  # the defaults: list price + carrier fee


@pytest.fixture
def prices(settings):
    settings.SMS_PRICE_LONG_CODE = Decimal("0.0083")
    settings.SMS_PRICE_TOLL_FREE = Decimal("0.0090")
    settings.SMS_PRICE_SHORT_CODE = Decimal("0.0100")
    settings.SMS_CARRIER_FEE = Decimal("0.003")
    settings.SMS_FAILED_MESSAGE_FEE = Decimal("0.001")
    settings.LOOKUP_PRICE_LINE_TYPE = Decimal("0.008")
    settings.LOOKUP_PRICE_LINE_STATUS = Decimal("0.007")
    settings.LOOKUP_PRICE_REASSIGNED = Decimal("0.01")
    return settings


# Prices ----------------------------------------------------------------------------------------


def test_a_segment_costs_the_kinds_price_plus_the_carrier_fee(prices):
    assert costs.segment_price(Sender.Kind.LONG_CODE) == Decimal("0.0113")
    assert costs.segment_price(Sender.Kind.TEN_DLC) == Decimal("0.0113")  # a long code
    assert costs.segment_price(Sender.Kind.TOLL_FREE) == Decimal("0.0120")
    assert costs.segment_price(Sender.Kind.SHORT_CODE) == Decimal("0.0130")


def test_the_defaults_are_twilios_us_list_prices():
    from django.conf import settings

    defaults = (
        settings.SMS_PRICE_LONG_CODE,
        settings.SMS_PRICE_TOLL_FREE,
        settings.SMS_PRICE_SHORT_CODE,
        settings.SMS_CARRIER_FEE,
    )
    assert defaults == (Decimal("0.0083"), Decimal("0.0083"), Decimal("0.0083"), Decimal("0.003"))
    assert costs.segment_price("long_code") == LONG_CODE


def test_a_price_setting_must_be_a_decimal_amount(monkeypatch):
    monkeypatch.setenv("SMS_PRICE_LONG_CODE", "cheap")
    with pytest.raises(ImproperlyConfigured, match="not a decimal amount"):
        env_decimal("SMS_PRICE_LONG_CODE", "0.0083")
    monkeypatch.setenv("SMS_PRICE_LONG_CODE", "-1")
    with pytest.raises(ImproperlyConfigured, match="zero or more"):
        env_decimal("SMS_PRICE_LONG_CODE", "0.0083")
    monkeypatch.setenv("SMS_PRICE_LONG_CODE", "")
    assert env_decimal("SMS_PRICE_LONG_CODE", "0.0083") == Decimal("0.0083")


def test_only_undeliverable_skips_count_as_saved(prices):
    skipped = {
        "opted_out": 50,
        "pending_review": 7,
        "paused": 4,
        "marked_invalid": 2,
        "invalid_number": 1,
        "landline": 3,
        "recent_errors": 1,
        "global_lifetime_error_count": 1,
        "duplicate_number": 2,
    }

    saving = costs.skip_savings(skipped=skipped, segments=2, kind="long_code")

    assert saving == 10 * 2 * Decimal("0.0113")
    consent_only = {"opted_out": 50, "pending_review": 7, "paused": 4}
    assert costs.skip_savings(skipped=consent_only, segments=1, kind="long_code") == 0


@pytest.mark.parametrize(
    "amount, shown",
    [
        (Decimal("0"), "$0.00"),
        (Decimal("0.004"), "under $0.01"),
        (Decimal("0.005"), "$0.01"),
        (Decimal("0.1130"), "$0.11"),
        (Decimal("1234.565"), "$1,234.57"),
    ],
)
def test_money_is_rounded_to_the_cent_for_reading(amount, shown):
    assert costs.money_text(amount) == shown


# A broadcast ------------------------------------------------------------------------------------


@pytest.fixture
def club(org, owner, prices):
    """Four sendable members and one recipient in each state the checks skip."""
    org.quiet_hours_start, org.quiet_hours_end = time(0, 0), time(23, 59, 59)
    org.save()
    sender = make_sender(org, phone_number="+14155550100", throughput=100)
    for n in range(4):
        make_contact(org, f"+1212400{n:04d}")
    skipped = {
        "opted_out": make_contact(org, "+12125550101"),
        "marked_invalid": make_contact(org, "+12125550102"),
        "invalid_number": make_contact(org, "n/a"),
        "landline": make_contact(org, "+12125550150"),
        "paused": make_contact(org, "+12125550103"),
        "pending_review": make_contact(org, "+12125550106"),
        "duplicate_number": make_contact(org, "+12124000000", first_name="Partner"),
    }
    NumberState.objects.of(org=org, phone="+12125550101").opt_out(
        reason="stop_keyword", cause="STOP"
    )
    NumberState.objects.of(org=org, phone="+12125550102").flag_automatically(
        code=30005, reason="Number does not exist", cause="test"
    )
    NumberFacts.objects.create(phone="+12125550150", line_type="landline")
    NumberState.objects.of(org=org, phone="+12125550103").pause(
        until=timezone.now() + timedelta(days=3), by=owner
    )
    now = timezone.now()
    ReviewItem.objects.create(
        organization=org,
        phone="+12125550106",
        body="I want to cancel my membership",
        kind=ReviewItem.Kind.OPT_OUT,
        rule="mentions_stop",
        received_at=now,
        due_at=now + timedelta(days=14),
    )
    return {"org": org, "sender": sender, "skipped": skipped}


def test_the_preview_saves_only_what_could_not_be_delivered(owner_client, club):
    body = "x" * 200  # two segments
    response = owner_client.post(
        "/broadcasts/preview/",
        {"sender": club["sender"].pk, "audience": "all", "body": body},
        headers=HTMX,
    )

    preview = response.context["preview"]
    assert set(preview.skipped) == {
        "opted_out",
        "marked_invalid",
        "invalid_number",
        "landline",
        "paused",
        "pending_review",
        "duplicate_number",
    }
    # marked_invalid, invalid_number, landline, duplicate_number: 4 recipients × 2 segments.
    assert preview.saving == 4 * 2 * Decimal("0.0113")
    assert "Skipping undeliverable numbers saves about <strong>$0.09</strong>" in (
        response.content.decode()
    )


def test_a_preview_with_nothing_undeliverable_says_nothing_about_saving(
    owner_client, owner, org, prices
):
    sender = make_sender(org, phone_number="+14155550100")
    make_contact(org, "+12124000001")
    opted_out = make_contact(org, "+12125550101")
    NumberState.objects.of(org=org, phone=opted_out.phone_e164).opt_out(reason="staff", by=owner)

    response = owner_client.post(
        "/broadcasts/preview/",
        {"sender": sender.pk, "audience": "all", "body": "Hi"},
        headers=HTMX,
    )

    assert response.context["preview"].saving == 0
    assert "saves about" not in response.content.decode()


def test_a_broadcasts_ledger_counts_spent_wasted_and_saved(owner, club):
    org, sender = club["org"], club["sender"]
    broadcast = broadcasts.broadcast_start(
        org=org, sender=sender, body="Pool closed today", kind="all", by=owner
    )
    messages = list(broadcast.messages.filter(status=Message.Status.PENDING).order_by("id"))
    delivered, priced, undelivered, failed_at_twilio = messages
    Message.objects.filter(pk=delivered.pk).update(status="delivered", provider_sid="SM1")
    # Twilio's own price, from a status fetch, replaces the estimate.
    Message.objects.filter(pk=priced.pk).update(
        status="delivered", provider_sid="SM2", price=Decimal("0.0079")
    )
    Message.objects.filter(pk=undelivered.pk).update(
        status="undelivered", error_code=30003, provider_sid="SM3"
    )
    Message.objects.filter(pk=failed_at_twilio.pk).update(status="failed", provider_sid="SM4")

    ledger = costs.broadcast_ledger(broadcast)

    assert ledger.delivered == Decimal("0.0113") + Decimal("0.0079")
    assert ledger.wasted == Decimal("0.0113") + Decimal("0.001")
    # Skipped: marked_invalid, invalid_number, landline, duplicate_number (4); the opted-out,
    # paused and pending-review recipients are skipped too, and never count as saved.
    assert broadcast.messages.filter(status="skipped").count() == 7
    assert ledger.saved == 4 * Decimal("0.0113")
    assert ledger.counts == {"delivered": 2, "wasted": 2, "saved": 4}


def test_a_send_twilio_refused_costs_nothing(owner, club):
    org, sender = club["org"], club["sender"]
    broadcast = broadcasts.broadcast_start(
        org=org, sender=sender, body="Pool closed today", kind="all", by=owner
    )
    Message.objects.filter(broadcast=broadcast, status="pending").update(
        status="failed", error_code=21610, provider_sid=None
    )

    ledger = costs.broadcast_ledger(broadcast)

    assert ledger.wasted == 0 and ledger.counts["wasted"] == 4


def test_the_broadcast_page_shows_its_costs(owner_client, owner, club):
    broadcast = broadcasts.broadcast_start(
        org=club["org"], sender=club["sender"], body="Pool closed today", kind="all", by=owner
    )
    Message.objects.filter(broadcast=broadcast, status="pending").update(status="delivered")

    page = owner_client.get(reverse("broadcasts:detail", args=[broadcast.pk])).content.decode()

    assert "Spent on delivered" in page
    assert "$0.05" in page  # 4 × $0.0113
    assert "Saved by skipping undeliverable numbers" in page


# The Costs report ---------------------------------------------------------------------------------


def at(org, day):
    return datetime.combine(day, time(12), tzinfo=org.tzinfo)


@pytest.fixture
def history(org, prices):
    """Messages over two months, and another org's, which must not count."""
    org.time_zone = "America/New_York"
    org.save()
    today = timezone.localtime(timezone.now(), org.tzinfo).date()
    this_month = today.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    sender = make_sender(org, phone_number="+14155550100")
    toll_free = make_sender(org, phone_number="+18005550100", kind=Sender.Kind.TOLL_FREE)
    member = make_contact(org, "+12125550123")

    def message(day, sender, **fields):
        made = make_message(member, sender=sender, **fields)
        Message.objects.filter(pk=made.pk).update(created_at=at(org, day))

    message(last_month, sender, status="delivered", segments=2)
    message(last_month, sender, status="undelivered", error_code=30003)
    message(last_month, sender, status="skipped", skip_reason=SkipReason.LANDLINE)
    message(last_month, sender, status="skipped", skip_reason=SkipReason.OPTED_OUT)
    message(today, toll_free, status="delivered")
    message(today, toll_free, status="skipped", skip_reason=SkipReason.PAUSED)
    message(today, toll_free, status="skipped", skip_reason=SkipReason.DUPLICATE_NUMBER)
    # A lookup paid with line type and line status; the other org's lookup is its own.
    NumberLookup.objects.create(
        organization=org,
        phone=member.phone_e164,
        looked_up_at=at(org, today),
        paid_line_type=True,
        paid_line_status=True,
    )
    other = make_org("Elsewhere")
    stranger = make_contact(other, "+12125550999")
    make_message(stranger, sender=make_sender(other), status="undelivered", error_code=30003)
    NumberLookup.objects.create(
        organization=other,
        phone=stranger.phone_e164,
        looked_up_at=at(org, today),
        paid_line_type=True,
        paid_reassigned=True,
    )
    return {"this_month": this_month, "last_month": last_month, "today": today}


def test_the_months_figures(org, history):
    period = reports.report_period(org, "90")

    months = reports.costs_by_month(org, period)

    last, this = months[history["last_month"]], months[history["this_month"]]
    assert (last.delivered, last.wasted, last.saved, last.lookups) == (
        2 * Decimal("0.0113"),
        Decimal("0.0113"),
        Decimal("0.0113"),  # the landline; never the opted-out member
        0,
    )
    assert (this.delivered, this.wasted, this.saved, this.lookups) == (
        Decimal("0.0120"),
        0,
        Decimal("0.0120"),  # the duplicate; never the paused member
        Decimal("0.015"),  # line type 0.008 + line status 0.007
    )
    assert list(months)[-1] == history["this_month"]
    total = costs.totals(months)
    assert total.spent == 3 * Decimal("0.0113") + Decimal("0.0120") + Decimal("0.015")


def test_the_costs_report_draws_the_months(owner_client, org, history):
    response = owner_client.get(reverse("deliverability:report", args=["costs"]), {"period": "90"})

    page = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in page and "Saved by skipping" in page
    assert f"{history['last_month']:%b %Y}" in page
    assert "Spent <strong>$0.06</strong>" in page  # 0.0226 + 0.0113 + 0.0120 + 0.015
    assert "Opted-out, paused and waiting-for-review people are never counted" in page


def test_the_costs_report_exports_csv(owner_client, org, history):
    response = owner_client.get(
        reverse("deliverability:report", args=["costs"]), {"period": "90", "format": "csv"}
    )

    lines = response.content.decode().splitlines()
    assert lines[0].startswith("Month,Spent on delivered (USD)")
    assert f"{history['last_month']:%Y-%m},0.0226,0.0113,0.0113,0" in lines
    assert lines[-1].startswith("Total,")


def test_the_costs_report_is_for_managers(teammate_client, org, history):
    response = teammate_client.get(reverse("deliverability:report", args=["costs"]))
    assert response.status_code == 403


# Twilio's own price -------------------------------------------------------------------------------


def test_a_status_fetch_keeps_twilios_price(org, sender, contact, prices):
    message = make_message(contact, sender=sender, status="sent", provider_sid="SM" + "b" * 32)
    Message.objects.filter(pk=message.pk).update(sent_at=timezone.now() - timedelta(hours=1))
    get_backend("locmem").remote[message.provider_sid] = RemoteMessage(
        sid=message.provider_sid,
        status="delivered",
        price=Decimal("0.00790"),
        price_unit="USD",
    )

    reconciliation.reconcile_stuck()

    message.refresh_from_db()
    assert message.status == "delivered"
    assert (message.price, message.price_unit) == (Decimal("0.00790"), "USD")
    months = reports.costs_by_month(org, reports.report_period(org, "7"))
    assert costs.totals(months).delivered == Decimal("0.0079")  # not the estimate, 0.0113


def test_twilios_negative_price_is_read_as_a_cost():
    from conversations.backends import _price

    assert _price("-0.00750") == Decimal("0.00750")
    assert _price(None) is None
    assert _price("n/a") is None
