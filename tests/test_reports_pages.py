"""The Reports pages (SPEC §7, managers): opt-out reasons, list health and delivery drawn as SVG
charts whose numbers are the table's, for 7/30/90 days and a custom range; the CSV export of
each; the staff activity report and its filters; tenancy; and bounded query counts."""

import csv
import io
import re
from datetime import datetime, time, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from conversations.models import Message
from deliverability.models import AuditEvent, NumberFacts, NumberState
from tests.factories import make_contact, make_message, make_sender

REPORTS = ["opt_outs", "health", "delivery", "staff"]
CHARTED = ["opt_outs", "health", "delivery"]


def today(org):
    return timezone.localtime(timezone.now(), org.tzinfo).date()


def noon(org, days_ago):
    """Noon in the org's time zone, `days_ago` days before today."""
    return datetime.combine(today(org) - timedelta(days=days_ago), time(12), tzinfo=org.tzinfo)


def period(org, key):
    """The query of a period; "custom" is the ten days around 60 days ago."""
    if key == "custom":
        first, last = today(org) - timedelta(days=65), today(org) - timedelta(days=55)
        return f"period=custom&from={first.isoformat()}&to={last.isoformat()}"
    return f"period={key}"


def at(audit_event, moment):
    AuditEvent.objects.filter(pk=audit_event.pk).update(created_at=moment)


def opt_out(org, phone, reason, days_ago, by=None):
    NumberState.objects.of(org=org, phone=phone).opt_out(
        reason=reason, by=by, cause="" if by else "test", note="n"
    )
    at(AuditEvent.objects.filter(organization=org, phone=phone).latest("id"), noon(org, days_ago))


@pytest.fixture
def opt_outs(org, owner, other_org, outsider):
    opt_out(org, "+12125550111", "stop_keyword", 1)
    opt_out(org, "+12125550112", "stop_keyword", 2)
    opt_out(org, "+12125550113", "staff", 3, by=owner)
    opt_out(org, "+12125550114", "carrier_stop", 20)
    opt_out(org, "+12125550115", "deactivated", 60)
    opt_out(org, "+12125550116", "staff", 100, by=owner)  # before every period
    opt_out(org, "+12125550117", "reassigned", 5)
    # Another organization's opt-outs never count here.
    for n in range(4):
        opt_out(other_org, f"+1212555020{n}", "deactivated", 1, by=None)


# (reason label, count, share) per period
OPT_OUTS = {
    "7": [("STOP keyword", 2, "50.0"), ("Carrier STOP", 0, "0.0"), ("Deactivated", 0, "0.0"),
          ("Staff", 1, "25.0"), ("Wrong number", 0, "0.0"), ("Reassigned number", 1, "25.0")],
    "30": [("STOP keyword", 2, "40.0"), ("Carrier STOP", 1, "20.0"), ("Deactivated", 0, "0.0"),
           ("Staff", 1, "20.0"), ("Wrong number", 0, "0.0"), ("Reassigned number", 1, "20.0")],
    "90": [("STOP keyword", 2, "33.3"), ("Carrier STOP", 1, "16.7"), ("Deactivated", 1, "16.7"),
           ("Staff", 1, "16.7"), ("Wrong number", 0, "0.0"), ("Reassigned number", 1, "16.7")],
    "custom": [("STOP keyword", 0, "0"), ("Carrier STOP", 0, "0"), ("Deactivated", 1, "100.0"),
               ("Staff", 0, "0"), ("Wrong number", 0, "0"), ("Reassigned number", 0, "0")],
}  # fmt: skip


def table_rows(page):
    """(label, count, share) of a report table of that shape."""
    table = page.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    return re.findall(
        r'<tr><td>([^<]*)</td><td class="text-end">(\d+)</td>'
        r'<td class="text-end">([\d.]+)%</td></tr>',
        table,
    )


def bars(page):
    """(label, shown text, bar width) of each bar of the first horizontal bar chart."""
    svg = page.split("<svg", 1)[1].split("</svg>", 1)[0]
    return [
        (label, shown, int(width))
        for label, width, shown in re.findall(
            r'<title>([^<]*)</title>[^<]*</text><rect [^>]*width="(\d+)"[^>]*></rect>'
            r"<text [^>]*>([^<]*)</text>",
            svg,
        )
    ]


def get(client, name, query):
    response = client.get(f"/reports/{name}/?{query}")
    assert response.status_code == 200
    return response


def read_csv(response):
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.reader(io.StringIO(response.content.decode())))


# Opt-out reasons ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["7", "30", "90", "custom"])
def test_the_opt_out_chart_shows_the_tables_numbers(owner_client, org, opt_outs, key):
    page = get(owner_client, "opt_outs", period(org, key)).content.decode()
    assert "<svg" in page
    expected = OPT_OUTS[key]
    assert [(label, int(count), share) for label, count, share in table_rows(page)] == [
        (label, count, str(float(share))) for label, count, share in expected
    ]
    shown = bars(page)
    assert [(label, text) for label, text, _width in shown] == [
        (label, f"{float(share)}% ({count})") for label, count, share in expected
    ]
    # The longest bar is the biggest count, and a zero is no bar.
    widths = {label: width for label, _text, width in shown}
    top = max(expected, key=lambda row: row[1])[0]
    assert widths[top] == max(widths.values())
    assert all(widths[label] == 0 for label, count, _share in expected if count == 0)
    total = sum(count for _label, count, _share in expected)
    assert f"{total} opt-out{'s' if total != 1 else ''} in this period" in page


@pytest.mark.parametrize("key", ["7", "30", "90", "custom"])
def test_the_opt_out_csv_has_the_same_numbers(owner_client, org, opt_outs, key):
    rows = read_csv(get(owner_client, "opt_outs", f"{period(org, key)}&format=csv"))
    assert rows[0] == ["Reason", "Opt-outs", "Share %"]
    assert [(label, int(count), float(share)) for label, count, share in rows[1:]] == [
        (label, count, float(share)) for label, count, share in OPT_OUTS[key]
    ]


def test_an_empty_period_draws_no_bar(owner_client, org):
    page = get(owner_client, "opt_outs", "period=7").content.decode()
    assert "0 opt-outs in this period" in page
    assert all(width == 0 for _label, _text, width in bars(page))


def test_a_bad_custom_range_says_so_above_the_last_30_days(owner_client, org, opt_outs):
    response = owner_client.get("/reports/opt_outs/?period=custom&from=yesterday&to=")
    assert response.status_code == 400
    assert "Enter both dates of a custom period (YYYY-MM-DD)." in response.content.decode()
    assert response.context["period"].key == "30"
    assert response.context["data"]["total"] == 5


def test_a_reversed_custom_range_is_a_form_error(owner_client, org, opt_outs):
    first, last = today(org) - timedelta(days=55), today(org) - timedelta(days=65)
    response = owner_client.get(f"/reports/opt_outs/?period=custom&from={first}&to={last}")
    assert response.status_code == 400
    page = response.content.decode()
    assert "The start date must be on or before the end date." in page
    # The form keeps what was typed, so that it can be corrected.
    assert f'name="from" value="{first}"' in page and f'name="to" value="{last}"' in page
    assert '<option value="custom" selected>' in page


def test_the_reports_index_is_the_opt_out_report(owner_client, org, opt_outs):
    response = owner_client.get("/reports/")
    assert response.status_code == 200
    assert response.context["report"] == "opt_outs"


# List health -------------------------------------------------------------------------------------


@pytest.fixture
def health(org, owner):
    for n in range(3):
        make_contact(org, f"+1212400{n:04d}")  # sendable
    opted = make_contact(org, "+12125550101")
    manual = make_contact(org, "+12125550102")
    automatic = make_contact(org, "+12125550103")
    paused = make_contact(org, "+12125550104")
    landline = make_contact(org, "+12125550150")
    make_contact(org, "n/a")
    NumberState.objects.of(org=org, phone=opted.phone_e164).opt_out(reason="staff", by=owner)
    NumberState.objects.of(org=org, phone=manual.phone_e164).mark_invalid(by=owner)
    NumberState.objects.of(org=org, phone=automatic.phone_e164).flag_automatically(
        code=30005, reason="No such number", cause="t"
    )
    NumberState.objects.of(org=org, phone=paused.phone_e164).pause(
        until=timezone.now() + timedelta(days=2), by=owner
    )
    NumberFacts.objects.create(phone=landline.phone_e164, line_type="landline")


HEALTH = [
    ("Total contacts", 9, "100.0"),
    ("Subscribed (paused included)", 8, "88.9"),
    ("Sendable", 3, "33.3"),
    ("Opted out", 1, "11.1"),
    ("Invalid (manual)", 1, "11.1"),
    ("Invalid (automatic)", 1, "11.1"),
    ("Unusable number as entered", 1, "11.1"),
    ("Landline", 1, "11.1"),
    ("Paused", 1, "11.1"),
]


@pytest.mark.parametrize("key", ["7", "30", "90", "custom"])
def test_the_health_chart_shows_the_tables_numbers(owner_client, org, health, key):
    page = get(owner_client, "health", period(org, key)).content.decode()
    assert "<svg" in page
    assert [(label, int(count), share) for label, count, share in table_rows(page)] == HEALTH
    assert [(label, text) for label, text, _width in bars(page)] == [
        (label, f"{count} ({share}%)") for label, count, share in HEALTH[1:]
    ]


def test_the_health_csv_has_the_same_numbers(owner_client, org, health):
    rows = read_csv(get(owner_client, "health", "period=30&format=csv"))
    assert rows[0] == ["Measure", "Contacts", "Share %"]
    assert [(label, int(count), share) for label, count, share in rows[1:]] == HEALTH


def test_health_never_counts_another_organizations_contacts(owner_client, org, other_org, health):
    for n in range(5):
        make_contact(other_org, f"+1212555030{n}")
    rows = table_rows(get(owner_client, "health", "period=30").content.decode())
    assert rows[0] == ("Total contacts", "9", "100.0")


# Delivery ----------------------------------------------------------------------------------------


def sent(org, contact, sender, days_ago, status, code=None, **fields):
    message = make_message(contact, sender, status=status, error_code=code, **fields)
    Message.objects.filter(pk=message.pk).update(created_at=noon(org, days_ago))


@pytest.fixture
def deliveries(org, other_org):
    sender = make_sender(org)
    ann = make_contact(org, "+12125550101")
    bob = make_contact(org, "+12125550102")
    for _ in range(3):
        sent(org, ann, sender, 1, "delivered")
    sent(org, bob, sender, 1, "undelivered", 30003)
    sent(org, ann, sender, 2, "delivered")
    sent(org, bob, sender, 2, "failed", 30007)
    sent(org, ann, sender, 2, "skipped", skip_reason="paused")  # not attempted: not counted
    sent(org, ann, sender, 2, "received", direction="inbound")  # not ours
    sent(org, ann, sender, 10, "delivered")
    sent(org, ann, sender, 10, "read")
    sent(org, bob, sender, 40, "undelivered", 30005)
    sent(org, bob, sender, 60, "undelivered", 30003)
    sent(org, ann, sender, 60, "sent")  # attempted, no final status yet
    theirs = make_contact(other_org, "+12125550199")
    for days_ago in (1, 10, 60):
        sent(other_org, theirs, make_sender(other_org), days_ago, "failed", 21211)


def day_rows(page):
    table = page.split('id="report-table"', 1)[1].split("</table>", 1)[0]
    return re.findall(
        r'<tr><td>([A-Z][a-z]{2} \d+)</td><td class="text-end">(\d+)</td>'
        r'<td class="text-end">(\d+)</td><td class="text-end">(\d+)</td>'
        r'<td class="text-end">([^<]*)</td></tr>',
        table,
    )


def columns(page):
    """{day label: shown text} of the delivery rate chart."""
    svg = page.split("<svg", 1)[1].split("</svg>", 1)[0]
    return dict(re.findall(r"<title>([A-Z][a-z]{2} \d+): ([^<]*)</title></rect>", svg))


def reason_rows(page):
    table = page.split("<caption>Failures by reason</caption>", 1)[1].split("</table>", 1)[0]
    return re.findall(
        r'<tr><td>([^<]*)</td><td>(\d*)</td><td>([a-z_]*)</td><td class="text-end">(\d+)</td></tr>',
        table,
    )


def reason_bars(page):
    chart = page.split('aria-labelledby="reason-caption"', 1)[1]
    return [(label, text) for label, text, _width in bars(chart)]


DELIVERY = {
    # totals: attempted, delivered, failed, rate; failures by reason
    "7": ((6, 4, 2, "66.7"), [("Unreachable", 1), ("Spam detected (carrier filtering)", 1)]),
    "30": ((8, 6, 2, "75.0"), [("Unreachable", 1), ("Spam detected (carrier filtering)", 1)]),
    "90": (
        (11, 6, 4, "60.0"),
        [
            ("Unreachable", 2),
            ("Spam detected (carrier filtering)", 1),
            ("Carrier response that the number does not exist", 1),
        ],
    ),
    "custom": ((2, 0, 1, "0.0"), [("Unreachable", 1)]),
}


@pytest.mark.parametrize("key", ["7", "30", "90", "custom"])
def test_the_delivery_charts_show_the_tables_numbers(owner_client, org, deliveries, key):
    page = get(owner_client, "delivery", period(org, key)).content.decode()
    assert page.count("<svg") == 2  # the rate per day, the failures by reason
    days = day_rows(page)
    assert len(days) == {"7": 7, "30": 30, "90": 90, "custom": 11}[key]
    # Each column of the chart is the day's rate in the table ("–" with nothing finished).
    assert columns(page) == {day: rate for day, _a, _d, _f, rate in days}
    (attempted, delivered, failed, rate), reasons = DELIVERY[key]
    assert sum(int(a) for _day, a, _d, _f, _r in days) == attempted
    assert sum(int(d) for _day, _a, d, _f, _r in days) == delivered
    assert sum(int(f) for _day, _a, _d, f, _r in days) == failed
    assert (
        f"{attempted} messages sent, {delivered} delivered, {failed} failed: "
        f"a delivery rate of <strong>{rate}%</strong>"
    ) in page
    shown_reasons = [(reason, int(count)) for reason, _code, _cat, count in reason_rows(page)]
    assert sorted(shown_reasons) == sorted(reasons)
    assert sorted(reason_bars(page)) == sorted((r, str(n)) for r, n in reasons)


def test_the_delivery_rate_of_a_day_is_delivered_over_finished(owner_client, org, deliveries):
    page = get(owner_client, "delivery", "period=7").content.decode()
    label = f"{noon(org, 1):%b} {noon(org, 1).day}"
    by_day = {day: (a, d, f, rate) for day, a, d, f, rate in day_rows(page)}
    assert by_day[label] == ("4", "3", "1", "75.0%")
    assert columns(page)[label] == "75.0%"
    assert columns(page)[f"{noon(org, 0):%b} {noon(org, 0).day}"] == "–"


@pytest.mark.parametrize("key", ["7", "90", "custom"])
def test_the_delivery_csv_has_the_same_numbers(owner_client, org, deliveries, key):
    page = get(owner_client, "delivery", period(org, key)).content.decode()
    rows = read_csv(get(owner_client, "delivery", f"{period(org, key)}&format=csv"))
    assert rows[0] == ["Day", "Attempted", "Delivered", "Failed", "Delivery rate %"]
    split = rows.index(["Failure reason", "Code", "Category", "Count"])
    days = rows[1 : split - 1]
    assert [(a, d, f, rate) for _day, a, d, f, rate in days] == [
        (a, d, f, rate.rstrip("%").replace("–", "")) for _day, a, d, f, rate in day_rows(page)
    ]
    assert sorted((r, int(n)) for r, _code, _cat, n in rows[split + 1 :]) == sorted(
        DELIVERY[key][1]
    )


def test_delivery_never_counts_another_organizations_messages(owner_client, org, deliveries):
    page = get(owner_client, "delivery", "period=90").content.decode()
    assert "Fails E.164 validation" not in page
    assert "+12125550199" not in page


# Staff activity ----------------------------------------------------------------------------------


@pytest.fixture
def activity(org, owner, teammate, other_org, outsider):
    ann = make_contact(org, "+12125550101", first_name="Ann", last_name="Lee")
    bob = make_contact(org, "+12125550102", first_name="Bob", last_name="Ray")
    NumberState.objects.of(org=org, phone=ann.phone_e164).mark_invalid(
        by=teammate, note="Wrong person answered", source_page="conversations", contact=ann
    )
    at(AuditEvent.objects.latest("id"), noon(org, 1))
    NumberState.objects.of(org=org, phone=bob.phone_e164).opt_out(
        reason="staff", by=owner, note="Asked at the desk", source_page="failed", contact=bob
    )
    at(AuditEvent.objects.latest("id"), noon(org, 2))
    NumberState.objects.of(org=org, phone=ann.phone_e164).pause(
        until=timezone.now() + timedelta(days=3),
        by=teammate,
        note="Travelling",
        source_page="contact",
        contact=ann,
    )
    at(AuditEvent.objects.latest("id"), noon(org, 60))
    # The system's own changes are not staff activity.
    NumberState.objects.of(org=org, phone="+12125550103").flag_automatically(
        code=21614, reason="Landline", cause="Twilio 21614"
    )
    # Another organization's staff never appear.
    NumberState.objects.of(org=other_org, phone="+12125550299").mark_invalid(
        by=outsider, note="Their own business"
    )
    return {"ann": ann, "bob": bob}


TEAMMATE_MARKED_INVALID = [
    "teammate",
    "Marked invalid",
    "(212) 555-0101",
    "Ann Lee",
    "conversations",
    "Wrong person answered",
]


def staff_rows(page):
    table = page.split('id="report-table"', 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</tr>", table, re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", "<td>" + row, re.S)
        ]
        for row in rows
    ]


def test_staff_activity_says_who_did_what_when_where_and_why(owner_client, org, activity):
    page = get(owner_client, "staff", "period=7").content.decode()
    rows = staff_rows(page)
    assert [row[1:] for row in rows] == [
        TEAMMATE_MARKED_INVALID,
        ["owner", "Opted out", "(212) 555-0102", "Bob Ray", "failed", "Asked at the desk"],
    ]
    assert "System" not in page and "Their own business" not in page and "outsider" not in page


@pytest.mark.parametrize(
    "query, expected",
    [
        ("period=90", ["Marked invalid", "Opted out", "Paused"]),
        ("period=90&actor={teammate}", ["Marked invalid", "Paused"]),
        ("period=90&actor={owner}", ["Opted out"]),
        ("period=90&action=opt_out", ["Opted out"]),
        ("period=90&actor={teammate}&action=pause", ["Paused"]),
        ("period=90&actor={outsider}", []),
        ("period=7&action=pause", []),
        ("period=custom&from={d65}&to={d55}", ["Paused"]),
        ("period=90&action=auto_invalid", []),  # the system's changes are not staff activity
        ("period=90&action=bogus", ["Marked invalid", "Opted out", "Paused"]),
    ],
)
def test_staff_activity_filters_by_member_action_and_date(
    owner_client, org, owner, teammate, outsider, activity, query, expected
):
    query = query.format(
        teammate=teammate.pk,
        owner=owner.pk,
        outsider=outsider.pk,
        d65=today(org) - timedelta(days=65),
        d55=today(org) - timedelta(days=55),
    )
    page = get(owner_client, "staff", query).content.decode()
    assert [row[2] for row in staff_rows(page) if len(row) > 2] == expected


def test_the_staff_filter_offers_only_the_organizations_members(owner_client, org, activity):
    page = get(owner_client, "staff", "period=30").content.decode()
    members = page.split('id="staff-actor"', 1)[1].split("</select>", 1)[0]
    assert "teammate" in members and "owner" in members and "outsider" not in members


def test_the_staff_csv_has_the_same_rows(owner_client, org, teammate, activity):
    rows = read_csv(get(owner_client, "staff", f"period=90&actor={teammate.pk}&format=csv"))
    assert rows[0] == ["When", "Staff member", "Action", "Number", "Contact", "Page", "Note"]
    # The same rows, the number in E.164 as every export has it (the page reads it nationally).
    assert [row[1:] for row in rows[1:]] == [
        [*TEAMMATE_MARKED_INVALID[:2], "+12125550101", *TEAMMATE_MARKED_INVALID[3:]],
        ["teammate", "Paused", "+12125550101", "Ann Lee", "contact", "Travelling"],
    ]
    assert rows[1][0] == noon(org, 1).strftime("%Y-%m-%d %H:%M")


@pytest.fixture
def hostile(org, owner):
    """Staff activity whose free text a spreadsheet would run as formulas."""
    contact = make_contact(
        org, "+16175550101", first_name='=HYPERLINK("http://x","y")', last_name=""
    )
    NumberState.objects.of(org=org, phone=contact.phone_e164).mark_invalid(
        by=owner, note="@SUM(A1)", contact=contact
    )
    NumberState.objects.of(org=org, phone=contact.phone_e164).mark_valid(
        by=owner, note="+1+1", contact=contact
    )
    owner.first_name = "-Robin"
    owner.save(update_fields=["first_name"])
    return contact


def test_the_staff_csv_neutralises_formulas_and_keeps_the_number(owner_client, org, hostile):
    rows = read_csv(get(owner_client, "staff", "period=7&format=csv"))
    assert [row[1:] for row in rows[1:]] == [
        ["'-Robin", "Marked valid", "+16175550101", '\'=HYPERLINK("http://x","y")', "", "'+1+1"],
        [
            "'-Robin",
            "Marked invalid",
            "+16175550101",
            '\'=HYPERLINK("http://x","y")',
            "",
            "'@SUM(A1)",
        ],
    ]


@pytest.mark.parametrize("name", REPORTS)
def test_no_report_export_writes_a_cell_a_spreadsheet_would_run(owner_client, org, hostile, name):
    rows = read_csv(get(owner_client, name, "period=7&format=csv"))
    phone_columns = {rows[0].index(h) for h in ("Number",) if h in rows[0]}
    cells = [cell for row in rows for i, cell in enumerate(row) if i not in phone_columns]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_the_staff_report_records_actions_made_on_the_pages(owner_client, teammate_client, org):
    contact = make_contact(org, "+12125550111", first_name="Cy", last_name="Young")
    teammate_client.post(
        f"/numbers/{contact.pk}/mark-invalid/", {"page": "contact", "note": "Not theirs"}
    )
    rows = staff_rows(get(owner_client, "staff", "period=7").content.decode())
    assert rows[0][1:] == [
        "teammate",
        "Marked invalid",
        "(212) 555-0111",
        "Cy Young",
        "contact",
        "Not theirs",
    ]


# Every report: CSV, tenancy, access, query counts ------------------------------------------------


@pytest.mark.parametrize("name", REPORTS)
def test_each_report_exports_csv_with_a_header(owner_client, org, name):
    rows = read_csv(get(owner_client, name, "period=30&format=csv"))
    assert rows and rows[0]


@pytest.mark.parametrize("name", REPORTS)
def test_the_export_link_keeps_the_filters(owner_client, org, name):
    page = get(owner_client, name, "period=7").content.decode()
    assert 'href="?period=7&amp;format=csv"' in page


@pytest.mark.parametrize("name", REPORTS)
def test_staff_may_not_see_reports(teammate_client, name):
    assert teammate_client.get(f"/reports/{name}/").status_code == 403
    assert teammate_client.get(f"/reports/{name}/?format=csv").status_code == 403


def test_an_unknown_report_is_not_found(owner_client):
    assert owner_client.get("/reports/nothing/").status_code == 404


@pytest.mark.parametrize("name", REPORTS)
def test_another_organizations_manager_sees_none_of_it(
    outsider_client, org, opt_outs, deliveries, activity, name
):
    page = outsider_client.get(f"/reports/{name}/?period=90").content.decode()
    assert "+12125550101" not in page and "Wrong person answered" not in page
    assert "teammate" not in page and "Ann Lee" not in page


REPORT_QUERIES = {"opt_outs": 6, "health": 13, "delivery": 8, "staff": 8}


def add_history(org, owner, sender, count, start):
    for n in range(start, start + count):
        contact = make_contact(org, f"+1212400{n:04d}", first_name=f"Member{n}")
        NumberState.objects.of(org=org, phone=contact.phone_e164).opt_out(
            reason="staff", by=owner, contact=contact
        )
        status, code = ("delivered", None) if n % 2 else ("undelivered", 30003)
        sent(org, contact, sender, n % 20, status, code)


@pytest.mark.parametrize("name", REPORTS)
@pytest.mark.parametrize("fmt", ["", "&format=csv"])
def test_each_reports_query_count_is_bounded_and_does_not_grow(
    owner_client, org, owner, name, fmt, django_assert_max_num_queries
):
    sender = make_sender(org)
    url = f"/reports/{name}/?period=30{fmt}"
    add_history(org, owner, sender, 5, 0)
    owner_client.get(url)  # the session's first request
    cache.clear()
    with django_assert_max_num_queries(REPORT_QUERIES[name]) as few:
        assert owner_client.get(url).status_code == 200
    add_history(org, owner, sender, 20, 5)
    cache.clear()
    with django_assert_max_num_queries(REPORT_QUERIES[name]) as many:
        assert owner_client.get(url).status_code == 200
    assert len(many) == len(few)
