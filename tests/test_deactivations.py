"""Carrier deactivation lists (SPEC §6): every listed number is opted out with reason
`deactivated` in each org holding it, once per day.

Under the simulator the list is the 555-0195..99 range; against Twilio's contract mock (marked
`twilio_mock`) the 307 answer's `redirect_to` is followed and the file is downloaded from a local
HTTP server, because the contract's example names an S3 host that cannot be reached from here.
"""

import http.server
import threading
from datetime import date, timedelta
from io import StringIO

import pytest
import requests
from django.core.management import CommandError, call_command
from django.utils import timezone

from deliverability import deactivations, eligibility
from deliverability.deactivations import import_deactivations, parse_list
from deliverability.models import (
    AuditEvent,
    DeactivationImport,
    NumberFacts,
    NumberState,
    OptOutReason,
)
from tests.factories import make_contact

pytest_plugins = ["tests.conftest_twilio"]

DAY = date(2026, 11, 20)
# The contract's example answer to GET /v1/Deactivations.
CONTRACT_REDIRECT = "https://com-twilio-dev-messaging-deactivations.s3.amazonaws.com"


def _state(org, phone):
    return NumberState.objects.get(organization=org, phone=phone)


def _counts():
    return (
        AuditEvent.objects.count(),
        NumberState.objects.count(),
        NumberState.objects.exclude(opt_out_reason="").count(),
        DeactivationImport.objects.count(),
    )


def _run(*args):
    out = StringIO()
    call_command("import_deactivations", *args, stdout=out)
    return out.getvalue()


# Reading the file ------------------------------------------------------------------------------


def test_numbers_are_read_with_or_without_the_country_code():
    text = "+12125550196\n12125550197\n2125550198\n+1 (212) 555-0199\n"
    assert parse_list(text) == ["+12125550196", "+12125550197", "+12125550198", "+12125550199"]


def test_blank_and_junk_lines_are_ignored():
    text = "\n\nphone_number\n  2125550196  \r\nn/a\n555-0199\n0125550197\n+4420712345\n\t\n"
    assert parse_list(text) == ["+12125550196"]


def test_a_csv_with_more_columns_is_read_from_its_first_column():
    text = (
        "phone_number,deactivation_date,carrier\n"
        "12125550196,2026-11-20,Verizon\n"
        '"+1 (305) 555-0197",2026-11-20,"AT&T, Inc."\n'
    )
    assert parse_list(text) == ["+12125550196", "+13055550197"]


def test_numbers_outside_the_us_are_not_taken_for_us_numbers():
    # "+44 20 7123 45" has ten digits after the plus but is no US number.
    assert parse_list("+4420712345\n+442071234567\n+12125550196\n") == ["+12125550196"]


# Downloading the file --------------------------------------------------------------------------


@pytest.fixture
def list_server():
    """A local HTTP server for list files: set `.body` or `.status`; `.hits` counts GETs."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            server.hits.append(self.path)
            self.send_response(server.status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(server.body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.body, server.status, server.hits = "", 200, []
    server.url = f"http://127.0.0.1:{server.server_address[1]}/deactivations/{DAY}.txt"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_download_reads_the_file(list_server):
    list_server.body = "12125550196\n12125550197\n"
    assert deactivations.download(list_server.url) == "12125550196\n12125550197\n"
    assert list_server.hits == [f"/deactivations/{DAY}.txt"]


def test_a_failed_download_raises_an_error_the_task_retries(list_server):
    list_server.status = 403  # the signed URL expired
    with pytest.raises(requests.HTTPError) as failure:
        deactivations.download(list_server.url)
    assert isinstance(failure.value, OSError)  # import_deactivations_for retries OSErrors


# Importing under the simulator: 555-0195..99 are listed every day ------------------------------


@pytest.fixture
def holders(org, other_org):
    make_contact(org, "+12125550195")
    make_contact(org, "+12125550199")
    make_contact(org, "+12125550101")  # mobile, never listed
    make_contact(org, "+12125550150")  # landline, never listed
    make_contact(other_org, "+12125550195")
    make_contact(other_org, "+13055550197")
    return org, other_org


LISTED = ["+12125550195", "+12125550199", "+13055550197"]


def test_listed_numbers_are_opted_out_in_every_org_holding_them(holders):
    org, other_org = holders
    result = import_deactivations(DAY)

    assert (result.listed, result.opted_out, result.already_imported) == (3, 4, False)
    for holder, phone in [
        (org, "+12125550195"),
        (org, "+12125550199"),
        (other_org, "+12125550195"),
        (other_org, "+13055550197"),
    ]:
        state = _state(holder, phone)
        assert state.opt_out_reason == OptOutReason.DEACTIVATED
        assert state.opted_out_at is not None
        event = AuditEvent.objects.get(organization=holder, phone=phone)
        assert (event.action, event.actor, event.system_cause) == (
            "opt_out",
            None,
            "deactivation list 2026-11-20",
        )
        assert eligibility.check_number(org=holder, phone=phone) == "opted_out"
    assert set(NumberFacts.objects.filter(deactivated_at=DAY).values_list("phone", flat=True)) == (
        set(LISTED)
    )
    assert not NumberState.objects.filter(phone__in=["+12125550101", "+12125550150"]).exists()
    record = DeactivationImport.objects.get(date=DAY)
    assert (record.numbers_listed, record.numbers_opted_out) == (3, 4)


def test_a_day_imported_twice_changes_nothing(holders):
    import_deactivations(DAY)
    before = _counts()

    again = import_deactivations(DAY)
    output = _run("--date", DAY.isoformat())

    assert (again.already_imported, again.opted_out) == (True, 0)
    assert "already imported" in output
    assert _counts() == before


def test_a_later_list_naming_the_same_numbers_opts_out_nobody_twice(holders):
    import_deactivations(DAY)
    audited = AuditEvent.objects.count()
    result = import_deactivations(DAY + timedelta(days=1))
    assert (result.listed, result.opted_out, result.already_imported) == (3, 0, False)
    assert AuditEvent.objects.count() == audited


def test_a_pause_on_a_listed_number_becomes_an_opt_out(org, owner):
    make_contact(org, "+12125550196")
    NumberState.objects.of(org=org, phone="+12125550196").pause(
        until=timezone.now() + timedelta(days=7), by=owner
    )

    import_deactivations(DAY)

    state = _state(org, "+12125550196")
    assert (state.opt_out_reason, state.paused_until) == (OptOutReason.DEACTIVATED, None)
    event = AuditEvent.objects.filter(organization=org, action="opt_out").get()
    assert event.before["paused_until"] is not None
    assert event.after["paused_until"] is None
    assert eligibility.check_number(org=org, phone="+12125550196") == "opted_out"


def test_an_earlier_opt_out_keeps_its_reason(org):
    make_contact(org, "+12125550197")
    NumberState.objects.of(org=org, phone="+12125550197").opt_out(
        reason=OptOutReason.STOP_KEYWORD, cause="inbound STOP"
    )
    result = import_deactivations(DAY)
    assert result.opted_out == 0
    assert _state(org, "+12125550197").opt_out_reason == OptOutReason.STOP_KEYWORD


# The management command ------------------------------------------------------------------------


def test_the_command_imports_a_range_and_prints_totals(holders):
    output = _run("--date", "2026-11-20", "--until", "2026-11-22")
    assert output.splitlines() == [
        "2026-11-20: 3 numbers listed, 4 opted out",
        "2026-11-21: 3 numbers listed, 0 opted out",
        "2026-11-22: 3 numbers listed, 0 opted out",
        "4 numbers opted out",
    ]
    before = _counts()

    output = _run("--date", "2026-11-20", "--until", "2026-11-22")
    assert output.count("already imported") == 3
    assert output.splitlines()[-1] == "0 numbers opted out"
    assert _counts() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--date"),
        (["--date", "20/11/2026"], "YYYY-MM-DD"),
        (["--date", "2026-02-30"], "YYYY-MM-DD"),
        (["--date", "2026-11-20", "--until", "tomorrow"], "YYYY-MM-DD"),
        (["--date", "2026-11-21", "--until", "2026-11-20"], "before"),
        (["--date", "2024-01-01", "--until", "2026-11-20"], "a year"),
    ],
)
def test_bad_arguments_are_refused_and_import_nothing(holders, args, message):
    with pytest.raises(CommandError, match=message):
        _run(*args)
    assert not DeactivationImport.objects.exists()
    assert not NumberState.objects.exists()


# Against Twilio's contract mock ----------------------------------------------------------------


@pytest.fixture
def list_behind_redirect(monkeypatch, list_server):
    """Twilio's `redirect_to` answers with our local list server's file; records what it got."""
    followed = []
    real_download = deactivations.download

    def download(url):
        followed.append(url)
        return real_download(list_server.url)

    monkeypatch.setattr(deactivations, "download", download)
    list_server.followed = followed
    return list_server


@pytest.mark.twilio_mock
def test_the_list_behind_twilios_redirect_is_imported(
    org, other_org, twilio_static, twilio_traffic, list_behind_redirect
):
    list_behind_redirect.body = "12125550196\n+13055550197\n\nnot a number\n"
    make_contact(org, "+12125550196")
    make_contact(org, "+12125550101")
    make_contact(other_org, "+13055550197")

    result = import_deactivations(DAY)

    assert twilio_traffic.to("/v1/Deactivations") == [f"{twilio_static}/v1/Deactivations"]
    assert list_behind_redirect.followed == [CONTRACT_REDIRECT]
    assert len(list_behind_redirect.hits) == 1
    assert (result.listed, result.opted_out) == (2, 2)
    assert _state(org, "+12125550196").opt_out_reason == OptOutReason.DEACTIVATED
    assert _state(other_org, "+13055550197").opt_out_reason == OptOutReason.DEACTIVATED
    assert not NumberState.objects.filter(phone="+12125550101").exists()

    # The day is done: neither Twilio nor the file is asked again.
    assert import_deactivations(DAY).already_imported
    assert len(twilio_traffic.to("/v1/Deactivations")) == 1
    assert len(list_behind_redirect.hits) == 1


@pytest.mark.twilio_mock
def test_a_failed_download_leaves_the_day_to_import_again(org, twilio_static, list_behind_redirect):
    make_contact(org, "+12125550196")
    list_behind_redirect.status = 500
    with pytest.raises(OSError):
        import_deactivations(DAY)
    assert not DeactivationImport.objects.exists()
    assert not NumberState.objects.exists()

    list_behind_redirect.status, list_behind_redirect.body = 200, "12125550196\n"
    assert import_deactivations(DAY).opted_out == 1
    assert _state(org, "+12125550196").opt_out_reason == OptOutReason.DEACTIVATED
