"""Lookup packages per organization (SPEC §2): line type, line status (beta), reassigned number.

Against the simulator's number plan (SPEC §9): with line status, 555-0160..64 answer `inactive`
and 555-0165..69 `unknown`; the reassigned check answers `yes` for 555-0145..49 when the
consent date is more than 30 days old.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException

from deliverability import actions, catalogue, lookup_packages, lookups, tasks
from deliverability.lookups import LookupRequest, LookupResult
from deliverability.models import (
    AuditEvent,
    LookupPackages,
    NumberFacts,
    NumberLookup,
    NumberState,
    OptIn,
)
from tests.factories import make_contact

MOBILE = "+12125550101"
DISCONNECTED = "+12125550160"
NO_COVERAGE = "+12125550165"
REASSIGNED = "+12125550145"
CANADIAN = "+14165550145"  # Toronto: +1, but not a US number


def state(org, phone):
    return NumberState.objects.filter(organization=org, phone=phone).first() or NumberState()


def days_ago(days):
    return timezone.localdate() - timedelta(days=days)


@pytest.fixture
def with_status(org):
    return LookupPackages.objects.create(organization=org, line_status=True)


@pytest.fixture
def with_reassigned(org):
    return LookupPackages.objects.create(organization=org, reassigned=True)


# What is asked -----------------------------------------------------------------------------


def test_by_default_only_the_line_type_is_asked(org):
    make_contact(org, MOBILE, consent_date=days_ago(400))
    [request] = lookup_packages.plan(org, [MOBILE])
    assert (request.line_type, request.line_status, request.reassigned) == (True, False, False)
    assert request.fields == ["line_type_intelligence"]


def test_a_fresh_line_type_is_not_asked_again_but_a_due_line_status_is(org, with_status):
    make_contact(org, MOBILE)
    NumberFacts.objects.create(phone=MOBILE, line_type="mobile", looked_up_at=timezone.now())
    [request] = lookup_packages.plan(org, [MOBILE])
    assert request.fields == ["line_status"]
    tasks.lookup_numbers([MOBILE], org_id=org.pk)
    assert lookup_packages.plan(org, [MOBILE]) == []


def test_the_reassigned_check_is_asked_only_for_us_numbers(org, with_reassigned):
    make_contact(org, REASSIGNED, consent_date=days_ago(60))
    make_contact(org, CANADIAN, consent_date=days_ago(60))
    asked = {r.phone: r for r in lookup_packages.plan(org, [REASSIGNED, CANADIAN])}
    assert asked[REASSIGNED].last_verified == days_ago(60)
    assert "reassigned_number" in asked[REASSIGNED].fields
    assert not asked[CANADIAN].reassigned
    assert lookups.is_us_number(REASSIGNED) and not lookups.is_us_number(CANADIAN)


def test_the_reassigned_check_sends_the_newest_consent_of_the_org_on_the_number(
    org, with_reassigned
):
    make_contact(org, REASSIGNED, first_name="Old", consent_date=days_ago(900))
    make_contact(org, REASSIGNED, first_name="New", consent_date=days_ago(45))
    [request] = lookup_packages.plan(org, [REASSIGNED])
    assert request.last_verified == days_ago(45)


# What the answers do -----------------------------------------------------------------------


def test_inactive_sets_the_automatic_invalid_flag_disconnected(org, with_status):
    make_contact(org, DISCONNECTED)
    make_contact(org, NO_COVERAGE)
    make_contact(org, MOBILE)
    tasks.lookup_numbers([DISCONNECTED, NO_COVERAGE, MOBILE], org_id=org.pk)
    flagged = state(org, DISCONNECTED)
    assert (flagged.invalid_source, flagged.invalid_code, flagged.invalid_reason) == (
        "automatic",
        "line_status",
        "Disconnected (carrier line status)",
    )
    assert NumberFacts.objects.get(phone=DISCONNECTED).line_status == "inactive"
    assert NumberFacts.objects.get(phone=NO_COVERAGE).line_status == "unknown"
    assert NumberFacts.objects.get(phone=MOBILE).line_status == "active"
    assert not state(org, NO_COVERAGE).is_invalid
    assert not state(org, MOBILE).is_invalid
    audit = AuditEvent.objects.get(organization=org, phone=DISCONNECTED)
    assert audit.actor_label == "System (carrier line status)"


def test_without_line_status_a_disconnected_number_is_not_flagged(org):
    make_contact(org, DISCONNECTED)
    tasks.lookup_numbers([DISCONNECTED], org_id=org.pk)
    assert NumberFacts.objects.get(phone=DISCONNECTED).line_status == ""
    assert not state(org, DISCONNECTED).is_invalid


def test_unreachable_is_a_fact_never_a_flag(org):
    make_contact(org, MOBILE)
    request = LookupRequest(MOBILE, line_type=False, line_status=True)
    result = LookupResult(line_type="", line_status="unreachable", request=request)
    lookup_packages.apply(org, result)
    assert NumberFacts.objects.get(phone=MOBILE).line_status == "unreachable"
    assert not state(org, MOBILE).is_invalid


def test_recheck_clears_a_disconnected_flag_when_the_line_is_active_again(org, owner):
    contact = make_contact(org, MOBILE)
    inactive = LookupResult(
        line_type="mobile",
        line_status="inactive",
        request=LookupRequest(MOBILE, line_status=True),
    )
    lookup_packages.apply(org, inactive)
    assert state(org, MOBILE).invalid_code == catalogue.LINE_STATUS
    # The org does not pay for line status, but the flag came from it: Re-check asks it.
    text = actions.perform(
        "recheck", org=org, contact=contact, user=owner, data={}, source_page="contacts"
    )
    assert text == "Success: the number is mobile, line active now; the flag is cleared."
    assert not state(org, MOBILE).is_invalid
    assert NumberLookup.objects.filter(organization=org, paid_line_status=True).count() == 2


def test_recheck_keeps_the_flag_while_the_line_is_still_inactive(org, owner, with_status):
    contact = make_contact(org, DISCONNECTED)
    tasks.lookup_numbers([DISCONNECTED], org_id=org.pk)
    text = actions.perform(
        "recheck", org=org, contact=contact, user=owner, data={}, source_page="contacts"
    )
    assert "still" in text and "inactive" in text
    assert state(org, DISCONNECTED).invalid_code == "line_status"


def test_a_reassigned_number_is_opted_out_with_its_own_reason(org, with_reassigned):
    old = make_contact(org, REASSIGNED, consent_date=days_ago(60))
    recent = make_contact(org, "+12125550146", consent_date=days_ago(10))
    tasks.lookup_numbers([old.phone_e164, recent.phone_e164], org_id=org.pk)
    opted = state(org, REASSIGNED)
    assert opted.opt_out_reason == "reassigned"
    assert opted.get_opt_out_reason_display() == "Reassigned number"
    audit = AuditEvent.objects.get(organization=org, phone=REASSIGNED, action="opt_out")
    assert audit.note == "This number has changed owners since consent was given."
    assert not state(org, "+12125550146").is_opted_out
    # Asked once per consent date: the same batch again asks nothing more.
    assert lookup_packages.plan(org, [REASSIGNED, "+12125550146"]) == []


def test_only_start_lifts_a_reassigned_opt_out(org, with_reassigned):
    make_contact(org, REASSIGNED, consent_date=days_ago(60))
    tasks.lookup_numbers([REASSIGNED], org_id=org.pk)
    NumberState.objects.of(org=org, phone=REASSIGNED).opt_in(via=OptIn.KEYWORD, cause="YES")
    assert state(org, REASSIGNED).opt_out_reason == "reassigned"
    NumberState.objects.of(org=org, phone=REASSIGNED).opt_in(via=OptIn.START, cause="START")
    assert not state(org, REASSIGNED).is_opted_out


# Spend -------------------------------------------------------------------------------------


def test_each_lookup_records_the_packages_paid_for_and_their_price(org, settings):
    settings.LOOKUP_PRICE_LINE_TYPE = Decimal("0.008")
    settings.LOOKUP_PRICE_LINE_STATUS = Decimal("0.007")
    settings.LOOKUP_PRICE_REASSIGNED = Decimal("0.01")
    LookupPackages.objects.create(organization=org, line_status=True, reassigned=True)
    make_contact(org, REASSIGNED, consent_date=days_ago(60))
    make_contact(org, CANADIAN, consent_date=days_ago(60))
    tasks.lookup_numbers([REASSIGNED, CANADIAN], org_id=org.pk)
    us = NumberLookup.objects.get(phone=REASSIGNED)
    ca = NumberLookup.objects.get(phone=CANADIAN)
    assert (us.paid_line_type, us.paid_line_status, us.paid_reassigned) == (True, True, True)
    assert (us.reassigned, us.last_verified_date) == ("yes", days_ago(60))
    assert us.cost == Decimal("0.025")
    assert (ca.paid_reassigned, ca.cost) == (False, Decimal("0.015"))
    assert us.organization == org


def test_a_refused_lookup_is_not_counted_as_paid(org, monkeypatch):
    make_contact(org, MOBILE)

    def refuse(requests):
        return [TwilioRestException(404, "/v2", "not found") for _ in requests]

    monkeypatch.setattr(tasks, "lookup_many", refuse)
    monkeypatch.setattr(tasks, "lookup", lambda request: refuse([request])[0])
    tasks.lookup_numbers([MOBILE, "+12125550102"], org_id=org.pk)
    assert not NumberLookup.objects.exists()
    assert NumberFacts.objects.get(phone=MOBILE).lookup_error == "not found"


# Organizations never see each other's packages or answers -----------------------------------


def test_one_orgs_packages_never_apply_to_another(org, other_org, with_reassigned):
    make_contact(org, REASSIGNED, consent_date=days_ago(60))
    make_contact(other_org, REASSIGNED, consent_date=days_ago(60))
    assert lookup_packages.plan(other_org, [REASSIGNED])[0].reassigned is False
    tasks.lookup_numbers([REASSIGNED], org_id=other_org.pk)
    tasks.lookup_numbers([REASSIGNED], org_id=org.pk)
    assert state(org, REASSIGNED).opt_out_reason == "reassigned"
    assert not state(other_org, REASSIGNED).is_opted_out  # its consent was never checked
    assert not NumberLookup.objects.filter(organization=other_org, paid_reassigned=True).exists()


def test_a_disconnected_number_is_flagged_in_every_org_that_holds_it(org, other_org, with_status):
    # Line status is a fact about the number, like its line type, whoever paid for it.
    make_contact(org, DISCONNECTED)
    make_contact(other_org, DISCONNECTED)
    tasks.lookup_numbers([DISCONNECTED], org_id=org.pk)
    assert state(other_org, DISCONNECTED).invalid_code == "line_status"
    assert not NumberLookup.objects.filter(organization=other_org).exists()


# One task per batch, batch requests ---------------------------------------------------------


def test_a_batch_task_asks_in_requests_of_lookup_batch_size(org, settings, monkeypatch):
    settings.LOOKUP_BATCH_SIZE = 50
    phones = [f"+1212400{n:04d}" for n in range(120)]
    for phone in phones:
        make_contact(org, phone)
    calls = []
    real = tasks.lookup_many
    monkeypatch.setattr(
        tasks, "lookup_many", lambda requests: calls.append(len(requests)) or real(requests)
    )
    assert tasks.lookup_numbers(phones, org_id=org.pk) == 120
    assert sorted(calls) == [20, 50, 50]
    assert NumberFacts.objects.exclude(looked_up_at=None).count() == 120


class _Client:
    """A twilio-python client whose batch query answers what the test says."""

    def __init__(self, answer=None, refuse=None):
        self.sent = []
        self.answer, self.refuse = answer, refuse
        self.lookups = self
        self.v2 = self
        self.query = self

    def create(self, lookup_request):
        self.sent.append(lookup_request.to_dict())
        if self.refuse:
            raise self.refuse
        return type("Answer", (), {"phone_numbers": self.answer(self.sent[-1])})()


def test_batch_answers_are_matched_by_correlation_id_then_number(settings, monkeypatch):
    settings.SMS_BACKEND = "twilio"
    requests = [
        LookupRequest("+12125550101"),
        LookupRequest("+12125550150", line_status=True),
        LookupRequest("+12125550145", last_verified=days_ago(60)),
        LookupRequest("+12125550199"),
    ]

    def answer(body):
        first, second, third, _fourth = body["phone_numbers"]
        assert third["reassigned_number"] == {"last_verified_date": days_ago(60).strftime("%Y%m%d")}
        assert second["fields"] == ["line_type_intelligence", "line_status"]
        return [
            # Out of order, one without its correlation id, one refused, one left out.
            {
                "correlation_id": third["correlation_id"],
                "phone_number": third["phone_number"],
                "line_type_intelligence": {"type": "mobile"},
                "reassigned_number": {"is_number_reassigned": "yes"},
            },
            {
                "phone_number": second["phone_number"],
                "line_type_intelligence": {"type": "landline", "carrier_name": "Bell"},
                "line_status": {"status": "active"},
            },
            {"correlation_id": first["correlation_id"], "twilio_error_code": 60600},
        ]

    client = _Client(answer)
    monkeypatch.setattr(lookups, "twilio_client", lambda: client)
    first, second, third, fourth = lookups.lookup_many(requests)
    assert isinstance(first, TwilioRestException) and "60600" in first.msg
    assert (second.line_type, second.carrier_name, second.line_status) == (
        "landline",
        "Bell",
        "active",
    )
    assert (third.line_type, third.reassigned) == ("mobile", "yes")
    assert isinstance(fourth, TwilioRestException) and fourth.status == 404
    assert len(client.sent) == 1


def test_a_refused_batch_is_asked_number_by_number(settings, monkeypatch):
    settings.SMS_BACKEND = "twilio"
    client = _Client(refuse=TwilioRestException(400, "/v2/batch/query", "bad request"))
    monkeypatch.setattr(lookups, "twilio_client", lambda: client)
    asked = []
    monkeypatch.setattr(
        lookups, "lookup", lambda request: asked.append(request.phone) or LookupResult("mobile")
    )
    answers = lookups.lookup_batch([LookupRequest(MOBILE), LookupRequest("+12125550102")])
    assert [a.line_type for a in answers] == ["mobile", "mobile"]
    assert asked == [MOBILE, "+12125550102"]


def test_an_unreachable_twilio_leaves_the_batch_for_the_refresh(org, settings, monkeypatch):
    make_contact(org, MOBILE)
    make_contact(org, "+12125550102")

    def down(requests):
        raise ConnectionError("Twilio is down")

    monkeypatch.setattr(tasks, "lookup_many", down)
    tasks.lookup_numbers([MOBILE, "+12125550102"], org_id=org.pk)
    assert not NumberFacts.objects.exclude(looked_up_at=None).exists()
    assert not NumberLookup.objects.exists()


def test_the_refresh_enqueues_one_batch_per_org(org, other_org, monkeypatch):
    make_contact(org, MOBILE)
    make_contact(other_org, "+12125550102")
    enqueued = []
    monkeypatch.setattr(tasks, "enqueue", lambda name, *a, **kw: enqueued.append((name, a, kw)))
    assert tasks.refresh_stale_lookups() == 2
    assert sorted((a[0], kw["org_id"]) for _, a, kw in enqueued) == [
        ([MOBILE], org.pk),
        (["+12125550102"], other_org.pk),
    ]


# The first broadcast on a simulator population (bench/firstsend.py, one area code) ----------


@pytest.mark.parametrize(
    ("configuration", "skipped_kinds"),
    [
        ("line type", {"landline", "deactivated"}),
        ("line type + line status", {"landline", "deactivated", "inactive"}),
        ("all packages", {"landline", "deactivated", "inactive", "reassigned"}),
    ],
)
def test_the_first_broadcast_skips_what_the_packages_can_know(
    db, settings, configuration, skipped_kinds
):
    from bench import firstsend

    settings.LOOKUP_RATE = 1_000_000
    result = firstsend.run_configuration(configuration, False, npas=[212])
    assert result["contacts"] == 100
    assert result["deliverable_skipped"] == 0
    skipped = {kind for kind, counts in result["by_category"].items() if counts["skipped"]}
    assert skipped == skipped_kinds
    for kind in skipped_kinds:
        counts = result["by_category"][kind]
        assert counts["skipped"] == counts["doomed"] == counts["numbers"]
