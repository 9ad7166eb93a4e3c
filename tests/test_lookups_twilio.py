"""Line-type lookups (SPEC §2): Twilio Lookup v2 through the one client factory, and the
simulator's number plan.

Tests marked `twilio_mock` talk to Twilio's contract mock (TEST_SERVICES=twilio_mock): the
static mock answers with the contract's examples, the dynamic one with values generated from
the schemas (a line type may be any string there).
"""

from datetime import date, timedelta

import pytest
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from deliverability import eligibility, lookup_packages, services, tasks
from deliverability.lookups import (
    LookupRequest,
    LookupResult,
    lookup_line_type,
    lookup_many,
    normalize,
)
from deliverability.models import (
    AuditEvent,
    LineStatus,
    LineType,
    LookupPackages,
    NumberFacts,
    NumberLookup,
    NumberState,
    Reassigned,
)
from deliverability.twilio_client import BaseUrlHttpClient, twilio_client
from tests.factories import make_contact, make_org
from tests.twilio_mock import ACCOUNT_SID

pytest_plugins = ["tests.conftest_twilio"]

PHONE = "+12125550123"
LANDLINE = "+12125550150"  # the simulator's 555-0150..59 are landlines
# The contract's example of a line-type answer (Prism serves it when asked by name).
LINE_TYPE_EXAMPLE = "fetchLineTypeIntelligence"
EXAMPLE_TYPE, EXAMPLE_CARRIER = "nonFixedVoip", "Twilio - SMS/MMS-SVR"


def _looked_up_at(phone):
    return NumberFacts.objects.get(phone=phone).looked_up_at


def _age_lookup(phone, days):
    NumberFacts.objects.filter(phone=phone).update(
        looked_up_at=timezone.now() - timedelta(days=days)
    )


# Against the static mock: the contract's examples ---------------------------------------------


@pytest.mark.twilio_mock
def test_the_lookup_reads_the_contracts_line_type_example(twilio_static, twilio_traffic):
    twilio_traffic.example = LINE_TYPE_EXAMPLE
    result = lookup_line_type(PHONE)
    assert (result.line_type, result.carrier_name, result.error) == (
        EXAMPLE_TYPE,
        EXAMPLE_CARRIER,
        "",
    )
    assert result.is_sms_capable
    assert twilio_traffic.to("/v2/PhoneNumbers/+12125550123") != []


@pytest.mark.twilio_mock
def test_an_answer_without_line_type_intelligence_is_unknown(twilio_static):
    # The contract's first example answers without line_type_intelligence (null).
    result = lookup_line_type(PHONE)
    assert (result.line_type, result.carrier_name) == ("unknown", "")
    assert result.error == "no line type in the answer"
    assert result.is_sms_capable


@pytest.mark.twilio_mock
def test_the_lookup_task_saves_type_carrier_and_time(org, twilio_static, twilio_traffic):
    twilio_traffic.example = LINE_TYPE_EXAMPLE
    make_contact(org, PHONE)
    before = timezone.now()
    tasks.lookup_number(PHONE)
    facts = NumberFacts.objects.get(phone=PHONE)
    assert (facts.line_type, facts.line_type_raw, facts.carrier_name) == (
        EXAMPLE_TYPE,
        EXAMPLE_TYPE,
        EXAMPLE_CARRIER,
    )
    assert before <= facts.looked_up_at <= timezone.now()
    assert not NumberState.objects.filter(phone=PHONE).exclude(invalid_source="").exists()
    assert eligibility.check_number(org=org, phone=PHONE) is None


@pytest.mark.twilio_mock
def test_a_lookup_younger_than_90_days_is_not_repeated(org, twilio_static, twilio_traffic):
    twilio_traffic.example = LINE_TYPE_EXAMPLE
    make_contact(org, PHONE)
    tasks.lookup_number(PHONE)
    assert len(twilio_traffic.to("/v2/PhoneNumbers/")) == 1

    _age_lookup(PHONE, days=89)
    kept = _looked_up_at(PHONE)
    tasks.lookup_number(PHONE)
    tasks.lookup_numbers([PHONE])
    tasks.refresh_stale_lookups()
    assert len(twilio_traffic.to("/v2/PhoneNumbers/")) == 1
    assert _looked_up_at(PHONE) == kept


@pytest.mark.twilio_mock
def test_a_lookup_older_than_90_days_is_refreshed(org, twilio_static, twilio_traffic):
    twilio_traffic.example = LINE_TYPE_EXAMPLE
    make_contact(org, PHONE)
    tasks.lookup_number(PHONE)
    _age_lookup(PHONE, days=91)
    stale = _looked_up_at(PHONE)
    tasks.lookup_number(PHONE)
    assert len(twilio_traffic.to("/v2/PhoneNumbers/")) == 2
    assert _looked_up_at(PHONE) > stale + timedelta(days=90)

    # The periodic sweep finds it again once it is old.
    _age_lookup(PHONE, days=91)
    assert tasks.refresh_stale_lookups() == 1
    assert len(twilio_traffic.to("/v2/PhoneNumbers/")) == 3


@pytest.mark.twilio_mock
def test_twilio_client_sends_api_lookups_and_messaging_to_the_base_url(
    twilio_static, twilio_traffic
):
    client = twilio_client()
    message = client.api.v2010.accounts(ACCOUNT_SID).messages("SM" + "ab" * 16).fetch()
    number = client.lookups.v2.phone_numbers(PHONE).fetch()
    deactivations = client.messaging.v1.deactivations().fetch(date=date(2026, 11, 20))
    # Answers from the contract, so the mock (not Twilio) answered all three.
    assert message.sid.startswith("SM")
    assert number.valid is True
    assert deactivations.redirect_to.startswith("https://")
    assert [url.removeprefix(twilio_static) for _, url in twilio_traffic.requests] == [
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{'SM' + 'ab' * 16}.json",
        "/v2/PhoneNumbers/+12125550123",
        "/v1/Deactivations",
    ]


# Against the dynamic mock: odd answers --------------------------------------------------------


@pytest.mark.twilio_mock
def test_odd_answers_never_raise_are_stored_as_unknown_and_do_not_block(
    org, twilio_dynamic, twilio_traffic
):
    phones = [f"+1212555{n:04d}" for n in range(2000, 2020)]
    odd = []
    for phone in phones:
        make_contact(org, phone)
        tasks.lookup_number(phone)
        facts = NumberFacts.objects.get(phone=phone)
        assert facts.line_type in LineType.values
        assert facts.looked_up_at is not None
        verdict = eligibility.check_number(org=org, phone=phone)
        if facts.line_type_raw not in LineType.values:
            odd.append(facts.line_type_raw)
            assert facts.line_type == LineType.UNKNOWN
        if facts.is_sms_capable:
            assert verdict is None
        else:  # The dynamic mock happened to say "landline" or the like.
            assert verdict == "marked_invalid"
    assert len(twilio_traffic.to("/v2/PhoneNumbers/")) == 20
    assert odd, "the dynamic mock is expected to invent line types"


# Without network: the base URL rewriting ------------------------------------------------------


@pytest.fixture
def sent(monkeypatch):
    """Every URL twilio-python would call; nothing leaves the machine."""
    urls = []

    def request(client, method, url, *args, **kwargs):
        urls.append(url)
        if "/Deactivations" in url:
            return Response(307, '{"redirect_to": "https://lists.example/day.txt"}')
        return Response(200, '{"sid": "SM' + "00" * 16 + '", "phone_number": "+12125550123"}')

    monkeypatch.setattr(TwilioHttpClient, "request", request)
    return urls


@pytest.mark.parametrize(
    ("base_url", "url", "expected"),
    [
        (
            "http://127.0.0.1:4010",
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
            "http://127.0.0.1:4010/2010-04-01/Accounts/AC1/Messages.json",
        ),
        (
            "http://127.0.0.1:4010/",
            "https://lookups.twilio.com/v2/PhoneNumbers/%2B12125550123?Fields=line_type_intelligence",
            "http://127.0.0.1:4010/v2/PhoneNumbers/%2B12125550123?Fields=line_type_intelligence",
        ),
        (
            "https://proxy.example:8443/twilio/",
            "https://messaging.twilio.com/v1/Deactivations?Date=2026-11-20",
            "https://proxy.example:8443/twilio/v1/Deactivations?Date=2026-11-20",
        ),
    ],
)
def test_the_base_url_client_keeps_path_and_query_and_replaces_the_host(
    sent, base_url, url, expected
):
    BaseUrlHttpClient(base_url).request("GET", url)
    assert sent == [expected]


def test_twilio_client_rewrites_every_twilio_host_when_a_base_url_is_set(settings, sent):
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = ACCOUNT_SID, "x"
    settings.TWILIO_BASE_URL = "http://127.0.0.1:4010"
    client = twilio_client()
    client.api.v2010.accounts(ACCOUNT_SID).messages("SM" + "00" * 16).fetch()
    client.lookups.v2.phone_numbers(PHONE).fetch()
    client.messaging.v1.deactivations().fetch(date=date(2026, 11, 20))
    assert [url.split("/")[2] for url in sent] == ["127.0.0.1:4010"] * 3

    settings.TWILIO_BASE_URL = ""
    sent.clear()
    client = twilio_client()
    assert type(client.http_client) is TwilioHttpClient
    client.lookups.v2.phone_numbers(PHONE).fetch()
    assert sent == ["https://lookups.twilio.com/v2/PhoneNumbers/+12125550123"]


# The simulator's number plan (no service needed) ----------------------------------------------


@pytest.mark.parametrize("backend", ["simulator", "locmem"])
@pytest.mark.parametrize(
    ("phone", "line_type", "carrier"),
    [
        ("+12125550150", "landline", "Simulated Telephone Co."),
        ("+13055550159", "landline", "Simulated Telephone Co."),
        ("+12125550185", "nonFixedVoip", "Simulated VoIP"),
        ("+12125550101", "mobile", "Simulated Wireless"),
        ("+15005550009", "landline", "Simulated Wireless"),  # Twilio's magic 21614 number
    ],
)
def test_the_simulator_answers_lookups_from_its_number_plan(
    settings, backend, phone, line_type, carrier
):
    settings.SMS_BACKEND = backend
    result = lookup_line_type(phone)
    assert (result.line_type, result.carrier_name) == (line_type, carrier)
    assert result.is_sms_capable is (line_type != "landline")


@pytest.mark.parametrize(
    "garbage", [None, 42, {"type": "mobile"}, ["mobile"], "", "satellitePhone", "LANDLINE"]
)
def test_a_type_we_do_not_know_is_unknown_and_does_not_block(garbage):
    result = normalize(garbage, carrier_name=garbage)
    assert result.line_type == "unknown"
    assert result.carrier_name == (garbage if isinstance(garbage, str) else "")
    assert result.is_sms_capable


def test_a_landline_lookup_flags_the_number_in_every_org_holding_it(org, other_org, settings):
    settings.SMS_BACKEND = "simulator"
    bystander = make_org("Elsewhere")
    make_contact(org, LANDLINE)
    make_contact(other_org, LANDLINE)
    make_contact(bystander, PHONE)
    tasks.lookup_number(LANDLINE)

    facts = NumberFacts.objects.get(phone=LANDLINE)
    assert (facts.line_type, facts.carrier_name) == ("landline", "Simulated Telephone Co.")
    for holder in (org, other_org):
        state = NumberState.objects.get(organization=holder, phone=LANDLINE)
        assert (state.invalid_source, state.invalid_code, state.invalid_reason) == (
            "automatic",
            "lookup",
            "Landline; not SMS-capable",
        )
        event = AuditEvent.objects.get(organization=holder, phone=LANDLINE)
        assert (event.action, event.actor, event.system_cause) == (
            "auto_invalid",
            None,
            "line-type lookup",
        )
        assert eligibility.check_number(org=holder, phone=LANDLINE) == "marked_invalid"
    assert not NumberState.objects.filter(organization=bystander).exists()

    # An org that adds the number later gets the flag from the fresh lookup, without a new one.
    make_contact(bystander, LANDLINE)
    settings.SMS_BACKEND = "twilio"  # a lookup would now fail loudly: there is no mock here
    tasks.lookup_number(LANDLINE)
    state = NumberState.objects.get(organization=bystander, phone=LANDLINE)
    assert state.invalid_code == "lookup"


def test_recording_a_landline_lookup_flags_every_holder_once(org, other_org):
    make_contact(org, PHONE)
    make_contact(other_org, PHONE)
    services.facts_record_lookup(phone=PHONE, result=normalize("landline", "Bell"))
    services.facts_record_lookup(phone=PHONE, result=normalize("landline", "Bell"))

    assert NumberFacts.objects.get(phone=PHONE).carrier_name == "Bell"
    flagged = NumberState.objects.filter(phone=PHONE, invalid_source="automatic")
    assert sorted(flagged.values_list("organization__slug", flat=True)) == [
        "harbor-test",
        "riverside-test",
    ]
    assert AuditEvent.objects.filter(phone=PHONE, action="auto_invalid").count() == 2


def test_an_unknown_type_recorded_does_not_block_sending(org):
    make_contact(org, PHONE)
    services.facts_record_lookup(phone=PHONE, result=normalize("satellitePhone"))
    facts = NumberFacts.objects.get(phone=PHONE)
    assert (facts.line_type, facts.line_type_raw) == ("unknown", "satellitePhone")
    assert eligibility.check_number(org=org, phone=PHONE) is None


# Lookup packages against the contract: line status, reassigned number, the batch endpoint ------


@pytest.mark.twilio_mock
def test_line_status_is_asked_by_field_and_inactive_flags_the_number(
    org, twilio_static, twilio_traffic
):
    LookupPackages.objects.create(organization=org, line_type=False, line_status=True)
    make_contact(org, PHONE)
    twilio_traffic.example = "fetchLineStatusInactive"
    tasks.lookup_number(PHONE, org_id=org.pk)
    [(url, params, _body)] = twilio_traffic.sent
    assert url.endswith("/v2/PhoneNumbers/+12125550123")
    assert params["Fields"] == "line_status"
    assert NumberFacts.objects.get(phone=PHONE).line_status == "inactive"
    flagged = NumberState.objects.get(organization=org, phone=PHONE)
    assert (flagged.invalid_code, flagged.invalid_reason) == (
        "line_status",
        "Disconnected (carrier line status)",
    )
    assert NumberLookup.objects.get().paid_line_status


@pytest.mark.twilio_mock
def test_line_status_active_is_read_and_sets_nothing(org, twilio_static, twilio_traffic):
    LookupPackages.objects.create(organization=org, line_type=False, line_status=True)
    make_contact(org, PHONE)
    twilio_traffic.example = "fetchLineStatusActive"
    tasks.lookup_number(PHONE, org_id=org.pk)
    assert NumberFacts.objects.get(phone=PHONE).line_status == "active"
    assert not NumberState.objects.filter(organization=org, phone=PHONE).exists()


@pytest.mark.twilio_mock
def test_the_reassigned_check_sends_the_consent_date_and_opts_out_on_yes(
    org, twilio_static, twilio_traffic
):
    LookupPackages.objects.create(organization=org, line_type=False, reassigned=True)
    make_contact(org, PHONE, consent_date=date(2020, 12, 27))
    twilio_traffic.example = "fetchReassignedNumberWithNumberReassigned"
    tasks.lookup_number(PHONE, org_id=org.pk)
    [(_url, params, _body)] = twilio_traffic.sent
    assert (params["Fields"], params["LastVerifiedDate"]) == ("reassigned_number", "20201227")
    state = NumberState.objects.get(organization=org, phone=PHONE)
    assert state.opt_out_reason == "reassigned"
    assert NumberLookup.objects.get().reassigned == "yes"


@pytest.mark.twilio_mock
@pytest.mark.parametrize(
    ("example", "answer"),
    [
        ("fetchReassignedNumberWithNumberNoReassigned", "no"),
        ("fetchReassignedNumberWithNoDataAvailable", "no_data_available"),
    ],
)
def test_a_number_not_known_reassigned_stays_subscribed(
    org, twilio_static, twilio_traffic, example, answer
):
    LookupPackages.objects.create(organization=org, line_type=False, reassigned=True)
    make_contact(org, PHONE, consent_date=date(2020, 12, 27))
    twilio_traffic.example = example
    tasks.lookup_number(PHONE, org_id=org.pk)
    assert NumberLookup.objects.get().reassigned == answer
    assert not NumberState.objects.filter(organization=org, phone=PHONE).exists()


@pytest.mark.twilio_mock
def test_a_batch_task_uses_the_batch_endpoint_and_the_contract_accepts_the_body(
    org, twilio_static, twilio_traffic, settings
):
    settings.LOOKUP_BATCH_SIZE = 50
    LookupPackages.objects.create(organization=org, line_status=True, reassigned=True)
    phones = [f"+1212555{n:04d}" for n in range(2100, 2160)]
    for phone in phones:
        make_contact(org, phone, consent_date=date(2024, 1, 2))
    tasks.lookup_numbers(phones, org_id=org.pk)
    batches = [sent for sent in twilio_traffic.sent if sent[0].endswith("/v2/batch/query")]
    assert len(batches) == 2  # 60 numbers, 50 a request: never one request per number
    assert twilio_traffic.to("/v2/PhoneNumbers/") == []  # Prism accepted both bodies
    first = batches[0][2]["phone_numbers"][0]
    assert first["fields"] == ["line_type_intelligence", "line_status", "reassigned_number"]
    assert first["reassigned_number"] == {"last_verified_date": "20240102"}
    # The contract's answer names no number of ours: nothing is recorded as looked up or paid
    # for, and the numbers stay due for the next refresh.
    assert not NumberLookup.objects.exists()
    assert len(lookup_packages.plan(org, phones)) == 60


@pytest.mark.twilio_mock
def test_odd_batch_answers_never_raise(org, twilio_dynamic, twilio_traffic):
    LookupPackages.objects.create(organization=org, line_status=True, reassigned=True)
    requests = [
        LookupRequest(f"+1212555{n:04d}", line_status=True, last_verified=date(2024, 1, 2))
        for n in range(2200, 2210)
    ]
    for _ in range(5):
        answers = lookup_many(requests)
        assert len(answers) == len(requests)
        for answer in answers:
            assert isinstance(answer, (LookupResult, TwilioRestException))
            if isinstance(answer, LookupResult):
                assert answer.line_status in {"", *LineStatus.values}
                assert answer.reassigned in {"", *Reassigned.values}
