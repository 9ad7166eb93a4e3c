"""Page numbers, dates and ids in a URL are typed by anyone: every list and report answers a
bad one with the last page, a form error or a 404 — never a 500.

Lists (Conversations, Contacts, Failed & Disabled, staff activity, an import's results): no
page number is the first page; a page past the end, however far, is the last page; something
that is not a page number (abc, 0, -1) is a 404. Reports: a custom period outside 2000–today,
reversed, longer than 366 days or malformed is a form error (400) above the default 30 days,
and its CSV export a 400 that says why.
"""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.test import Client
from django.utils import timezone

from contacts.models import ContactImport, ContactImportRow, Membership
from conversations.models import Message
from deliverability.models import NumberState
from tests.factories import (
    make_contact,
    make_member,
    make_message,
    make_org,
    make_org_and_manager,
    make_sender,
    sign_in,
)
from tests.isolation import rows_for_the_module

HUGE = "99999999999999999999"
NOT_PAGES = ["abc", "-1", "0", "1.5", " 2", "٢"]


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The rows of every test here, made once for the module: hundreds of tests read them.

    The owner's organization holds 60 contacts with a failed message each (two pages of 50)
    and 150 staff actions on other numbers (two pages of the staff activity report, 100 a
    page); the outsider's holds a few contacts in several states.
    """
    with rows_for_the_module(django_db_blocker):
        org, owner = make_org_and_manager()
        sender = make_sender(org, throughput=100)
        for n in range(60):
            contact = make_contact(org, f"+1212555{n:04d}", first_name=f"Member{n:02d}")
            make_message(contact, sender, status=Message.Status.FAILED, error_code=30003)
        for n in range(75):
            phone = f"+1212555{n + 100:04d}"
            NumberState.objects.of(org=org, phone=phone).mark_invalid(by=owner)
            NumberState.objects.of(org=org, phone=phone).mark_valid(by=owner)

        other_org = make_org("Harbor Test Clinic", slug="harbor-test")
        outsider = make_member(other_org, Membership.Role.MANAGER, username="outsider")
        other_sender = make_sender(other_org, throughput=100)
        for n in range(3):
            contact = make_contact(other_org, f"+1212555{n:04d}")
            make_message(contact, other_sender, status=Message.Status.FAILED, error_code=30003)
            NumberState.objects.of(org=other_org, phone=contact.phone_e164).opt_out(
                reason="staff", by=outsider
            )
        yield SimpleNamespace(org=org, owner=owner, other_org=other_org, outsider=outsider)


@pytest.fixture
def org(db, world):
    return world.org


@pytest.fixture
def owner(db, world):
    return world.owner


@pytest.fixture
def other_org(db, world):
    return world.other_org


@pytest.fixture
def outsider(db, world):
    return world.outsider


@pytest.fixture
def sixty(world):
    """60 contacts, each with a failed message: two pages of 50."""


@pytest.fixture
def activity(world):
    """150 staff actions: two pages of the staff activity report (100 a page)."""


@pytest.fixture
def a_few(world):
    """A few contacts of the outsider's organization, failed and opted out by staff."""


@pytest.fixture
def empty_client(db):
    """A manager of an organization with nothing in it."""
    org = make_org("Empty Test Studio", slug="empty-test")
    return sign_in(Client(), make_member(org, Membership.Role.MANAGER, username="empty"))


def page_shown(response):
    if "table" in response.context:
        return response.context["table"].page.number
    return response.context["page"].number


def rows_shown(response):
    if "table" in response.context:
        return len(response.context["table"].page.object_list)
    return len(response.context["page"].object_list)


LISTS = ["/conversations/", "/contacts/", "/conversations/failed/"]


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("page, shown, rows", [("", 1, 50), ("1", 1, 50), ("2", 2, 10)])
def test_a_page_in_range_is_that_page(owner_client, sixty, url, page, shown, rows):
    response = owner_client.get(url, {"page": page} if page else {})
    assert response.status_code == 200
    assert (page_shown(response), rows_shown(response)) == (shown, rows)


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("page", ["3", "40", HUGE, "9" * 400])
def test_a_page_past_the_end_is_the_last_page(owner_client, sixty, url, page):
    response = owner_client.get(url, {"page": page})
    assert response.status_code == 200
    assert (page_shown(response), rows_shown(response)) == (2, 10)


@pytest.mark.parametrize("url", LISTS)
def test_a_page_past_the_end_of_an_empty_list_is_the_empty_first_page(empty_client, url):
    response = empty_client.get(url, {"page": "3"})
    assert response.status_code == 200
    assert (page_shown(response), rows_shown(response)) == (1, 0)


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("page", NOT_PAGES)
def test_something_that_is_not_a_page_number_is_not_found(owner_client, sixty, url, page):
    assert owner_client.get(url, {"page": page}).status_code == 404


@pytest.mark.parametrize("per_page", ["0", "-1", "100000", HUGE])
def test_the_failed_log_pages_by_50_whatever_per_page_says(owner_client, sixty, per_page):
    response = owner_client.get("/conversations/failed/", {"per_page": per_page})
    assert response.status_code == 200
    assert (page_shown(response), rows_shown(response)) == (1, 50)


def test_the_htmx_list_panel_reads_the_page_the_same_way(owner_client, sixty):
    headers = {"HX-Request": "true", "HX-Target": "conversation-list"}
    response = owner_client.get("/conversations/", {"page": HUGE}, headers=headers)
    assert response.status_code == 200
    assert page_shown(response) == 2
    assert owner_client.get("/conversations/", {"page": "0"}, headers=headers).status_code == 404


@pytest.mark.parametrize("page, shown, rows", [("2", 2, 50), ("3", 2, 50), (HUGE, 2, 50)])
def test_the_staff_report_serves_its_last_page_past_the_end(
    owner_client, activity, page, shown, rows
):
    response = owner_client.get("/reports/staff/", {"period": "7", "page": page})
    assert response.status_code == 200
    assert (page_shown(response), rows_shown(response)) == (shown, rows)


@pytest.mark.parametrize("page", NOT_PAGES)
def test_the_staff_report_has_no_page_abc(owner_client, activity, page):
    assert owner_client.get("/reports/staff/", {"period": "7", "page": page}).status_code == 404


def test_an_imports_results_serve_their_last_page_past_the_end(owner_client, org, owner):
    job = ContactImport.objects.create(
        organization=org, created_by=owner, filename="m.csv", total_rows=250, state="done"
    )
    ContactImportRow.objects.bulk_create(
        ContactImportRow(contact_import=job, line=n + 2, outcome="duplicate") for n in range(250)
    )
    url = f"/contacts/import/{job.pk}/"
    response = owner_client.get(url, {"page": HUGE})
    assert (response.status_code, page_shown(response), rows_shown(response)) == (200, 2, 50)
    assert owner_client.get(url, {"page": "abc"}).status_code == 404


# Reports: the period ----------------------------------------------------------------------------

REPORTS = ["/reports/", "/reports/opt_outs/", "/reports/health/", "/reports/delivery/"]
REPORTS += ["/reports/staff/"]


def today(org):
    return timezone.localtime(timezone.now(), org.tzinfo).date()


def bad_periods(org):
    day = today(org)
    return {
        "year one": ({"from": "0001-01-01", "to": day.isoformat()}, "Choose dates between"),
        "year 9999": ({"from": day.isoformat(), "to": "9999-12-31"}, "Choose dates between"),
        "both extremes": ({"from": "0001-01-01", "to": "9999-12-31"}, "Choose dates between"),
        "tomorrow": ({"from": day.isoformat(), "to": str(day + timedelta(1))}, "Choose dates"),
        "reversed": (
            {"from": str(day - timedelta(5)), "to": str(day - timedelta(10))},
            "The start date must be on or before the end date.",
        ),
        "too long": (
            {"from": str(day - timedelta(400)), "to": day.isoformat()},
            "A custom period can cover at most 366 days.",
        ),
        "malformed": ({"from": "yesterday", "to": "2026-13-45"}, "Enter both dates"),
        "missing": ({"from": day.isoformat()}, "Enter both dates"),
        "very long": ({"from": "2" * 5000, "to": day.isoformat()}, "Enter both dates"),
    }


CASES = [
    "year one",
    "year 9999",
    "both extremes",
    "tomorrow",
    "reversed",
    "too long",
    "malformed",
    "missing",
    "very long",
]


@pytest.mark.parametrize("url", REPORTS)
@pytest.mark.parametrize("case", CASES)
def test_a_bad_custom_period_is_a_form_error_above_the_last_30_days(owner_client, org, url, case):
    params, error = bad_periods(org)[case]
    response = owner_client.get(url, {"period": "custom", **params})
    assert response.status_code == 400
    page = response.content.decode()
    assert error in page and "Showing the last 30 days instead." in page
    period = response.context["period"]
    assert (period.key, period.last_day, period.days) == ("30", today(org), 30)
    assert "format=csv" not in page  # no export of a period nobody asked for


@pytest.mark.parametrize("url", REPORTS)
@pytest.mark.parametrize("case", CASES)
def test_the_csv_of_a_bad_custom_period_says_why(owner_client, org, url, case):
    params, error = bad_periods(org)[case]
    response = owner_client.get(url, {"period": "custom", "format": "csv", **params})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert error in response.content.decode()


@pytest.mark.parametrize("url", REPORTS)
def test_an_unknown_period_is_a_form_error(owner_client, url):
    response = owner_client.get(url, {"period": "forever"})
    assert response.status_code == 400
    assert "Choose a period: 7, 30 or 90 days, or custom." in response.content.decode()


@pytest.mark.parametrize("url", REPORTS)
def test_a_whole_year_up_to_today_is_a_period(owner_client, org, url):
    first, last = today(org) - timedelta(days=365), today(org)
    response = owner_client.get(url, {"period": "custom", "from": first, "to": last})
    assert response.status_code == 200
    assert (response.context["period"].first_day, response.context["period"].days) == (first, 366)
    csv_response = owner_client.get(
        url, {"period": "custom", "from": first, "to": last, "format": "csv"}
    )
    assert csv_response.status_code == 200


@pytest.mark.parametrize("url", REPORTS)
def test_the_dates_from_and_to_are_ignored_outside_a_custom_period(owner_client, url):
    response = owner_client.get(url, {"period": "7", "from": "0001-01-01", "to": "garbage"})
    assert response.status_code == 200
    assert response.context["period"].days == 7


@pytest.mark.parametrize("actor", [HUGE, "abc", "-1", "٢"])
def test_the_staff_report_ignores_an_actor_that_cannot_exist(owner_client, activity, actor):
    response = owner_client.get("/reports/staff/", {"period": "7", "actor": actor})
    assert response.status_code == 200
    assert response.context["page"].paginator.count == 150


# The Failed & Disabled filters and export --------------------------------------------------------


@pytest.mark.parametrize("path", ["", "export.csv"])
def test_the_failed_log_takes_any_date_range(owner_client, sixty, path):
    query = {"date_from": "0001-01-01", "date_to": "9999-12-31"}
    response = owner_client.get(f"/conversations/failed/{path}", query)
    assert response.status_code == 200
    if path:
        assert len(b"".join(response.streaming_content).splitlines()) == 61
    else:
        assert rows_shown(response) == 50


@pytest.mark.parametrize(
    "query, error",
    [
        ({"date_from": "abc"}, "From: Enter a valid date."),
        ({"date_to": "2026-13-45"}, "To: Enter a valid date."),
        ({"date_from": "9" * 500}, "From: Enter a valid date."),
        ({"status": "lost"}, "Select a valid choice. lost is not one of the available choices."),
        ({"sender": HUGE}, "Sender: Select a valid choice."),
    ],
)
def test_a_filter_that_cannot_apply_is_shown_and_not_exported(owner_client, sixty, query, error):
    response = owner_client.get("/conversations/failed/", query)
    assert response.status_code == 200
    page = response.content.decode().replace("&#x27;", "'")
    assert error in page and "The list is shown without this filter." in page
    assert rows_shown(response) == 50
    export = owner_client.get("/conversations/failed/export.csv", query)
    assert export.status_code == 400
    assert export["Content-Type"].startswith("text/plain")
    assert error in export.content.decode()


@pytest.mark.parametrize("path", ["", "export.csv"])
@pytest.mark.parametrize("broadcast", [HUGE, "abc", "-1", "1.5"])
def test_the_failed_log_ignores_a_broadcast_that_cannot_exist(owner_client, sixty, path, broadcast):
    response = owner_client.get(f"/conversations/failed/{path}", {"broadcast": broadcast})
    assert response.status_code == 200
    if path:
        assert len(b"".join(response.streaming_content).splitlines()) == 61


def test_bulk_actions_skip_ids_that_cannot_exist(owner_client, sixty):
    response = owner_client.post(
        "/conversations/failed/bulk/", {"action": "mark-invalid", "message": [HUGE, "-1", "x"]}
    )
    assert response.status_code == 302
    messages = [m.message for m in response.wsgi_request._messages]
    assert messages == ["Select at least one message first."]


# Every list and report, every bad parameter ------------------------------------------------------

EVERY_PAGE = [
    "/conversations/",
    "/contacts/",
    "/conversations/failed/",
    "/conversations/failed/export.csv",
    "/conversations/review/",
    "/broadcasts/",
    "/contacts/import/",
    *REPORTS,
]
BAD_QUERIES = [
    "page=3",
    f"page={HUGE}",
    "page=abc",
    "page=-1",
    "page=0",
    "per_page=0",
    f"per_page={HUGE}",
    "period=custom&from=0001-01-01&to=2026-01-01",
    "period=custom&from=2026-01-01&to=9999-12-31",
    "period=custom&from=2026-05-01&to=2026-01-01",
    "period=custom&from=x&to=2026-02-30",
    "date_from=0001-01-01&date_to=9999-12-31",
    "date_from=abc&date_to=-1",
    f"actor={HUGE}&broadcast={HUGE}&sender={HUGE}",
    "q=%00&filter=%00&sort=%00",
    "format=csv&period=custom&from=0001-01-01&to=9999-12-31",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
@pytest.mark.parametrize("url", EVERY_PAGE)
def test_every_page_answers_a_bad_query_without_a_500(outsider_client, a_few, url, query):
    assert outsider_client.get(f"{url}?{query}").status_code in (200, 400, 404)


# Search ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/conversations/", "/contacts/"])
def test_a_search_with_a_nul_character_searches_without_it(owner_client, sixty, url):
    response = owner_client.get(url, {"q": "Member0\x007"})
    assert response.status_code == 200
    assert response.context["q"] == "Member07"
    assert rows_shown(response) == 1


# Ids in the path ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", f"/conversations/{HUGE}/"),
        ("get", f"/conversations/{HUGE}/thread/"),
        ("post", f"/conversations/{HUGE}/read/"),
        ("post", f"/conversations/{HUGE}/send/"),
        ("get", f"/contacts/{HUGE}/"),
        ("get", f"/contacts/import/{HUGE}/"),
        ("get", f"/broadcasts/{HUGE}/"),
        ("post", f"/broadcasts/{HUGE}/cancel/"),
        ("post", f"/numbers/{HUGE}/pause/"),
        ("post", f"/conversations/failed/{HUGE}/retry/"),
        ("post", f"/conversations/review/{HUGE}/"),
        ("post", f"/conversations/alerts/{HUGE}/resolve/"),
    ],
)
def test_an_id_too_big_for_the_database_is_not_found(owner_client, org, method, url):
    assert getattr(owner_client, method)(url).status_code == 404
