"""The Contacts pages (SPEC §7): the list with the same filters as the Conversations page, the
profile (state, messages, audit history), changing the phone number, and the CSV import of
members with a result for every row (SPEC §2, §8)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django.utils.formats import date_format

from contacts import importer
from contacts.models import Contact, ContactImport
from deliverability import eligibility
from deliverability.models import AuditEvent, NumberFacts, NumberState
from tests.factories import make_contact, make_message, make_sender

IMPORT_URL = "/contacts/import/"


@pytest.fixture
def people(org, owner):
    ann = make_contact(org, "+12125550101", first_name="Ann", last_name="Lee")
    bob = make_contact(org, "+12125550102", first_name="Bob", last_name="Ray")
    cat = make_contact(org, "+12125550103", first_name="Cat", last_name="Ng")
    dan = make_contact(org, "+12125554321", first_name="Dan", last_name="Ortiz")
    eve = make_contact(org, "n/a", first_name="Eve", last_name="Moss")
    NumberState.objects.of(org=org, phone=bob.phone_e164).mark_invalid(
        by=owner, note="Wrong person"
    )
    NumberState.objects.of(org=org, phone=cat.phone_e164).opt_out(reason="staff", by=owner)
    NumberState.objects.of(org=org, phone=dan.phone_e164).pause(
        until=timezone.now() + timedelta(days=3), by=owner
    )
    return {"ann": ann, "bob": bob, "cat": cat, "dan": dan, "eve": eve}


def listed(response):
    return [contact for contact, _state in response.context["rows"]]


def tab_counts(response):
    return {key: count for key, _label, count in response.context["tabs"]}


def flash(response):
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def local_day(org, moment):
    return date_format(timezone.localtime(moment, org.tzinfo), "M j, Y")


# The list ----------------------------------------------------------------------------------------


def test_it_counts_each_filter(teammate_client, people):
    response = teammate_client.get("/contacts/")
    assert response.status_code == 200
    assert tab_counts(response) == {"active": 4, "invalid": 1, "opted_out": 1, "all": 5}


@pytest.mark.parametrize(
    "filter_name, expected",
    [
        ("active", {"ann", "bob", "dan", "eve"}),  # an Invalid number is still Active
        ("invalid", {"bob"}),
        ("opted_out", {"cat"}),
        ("all", {"ann", "bob", "cat", "dan", "eve"}),
    ],
)
def test_it_filters_like_the_conversations_page(teammate_client, people, filter_name, expected):
    response = teammate_client.get("/contacts/", {"filter": filter_name})
    assert {c.first_name.lower() for c in listed(response)} == expected


def test_it_lists_contacts_by_name(teammate_client, people):
    response = teammate_client.get("/contacts/", {"filter": "all"})
    assert [c.last_name for c in listed(response)] == ["Lee", "Moss", "Ng", "Ortiz", "Ray"]


def test_each_row_shows_the_numbers_state(teammate_client, org, people):
    response = teammate_client.get("/contacts/", {"filter": "all"})
    page = response.content.decode()

    def row(contact):
        return page.split(f'<tr id="contact-{contact.pk}">', 1)[1].split("</tr>", 1)[0]

    assert 'title="Marked invalid by staff">Invalid</span>' in row(people["bob"])
    opted_out_at = NumberState.objects.get(phone=people["cat"].phone_e164).opted_out_at
    assert f"Opted out · Staff · {local_day(org, opted_out_at)}" in row(people["cat"])
    paused_until = NumberState.objects.get(phone=people["dan"].phone_e164).paused_until
    assert f"Paused until {local_day(org, paused_until)}" in row(people["dan"])
    assert 'title="Not a phone number">Not a phone number</span>' in row(people["eve"])
    assert "n/a" in row(people["eve"])  # the number as entered is never lost
    assert "badge" not in row(people["ann"])


@pytest.mark.parametrize(
    "query, expected",
    [
        ("ann", {"ann"}),
        ("Ortiz", {"dan"}),
        ("4321", {"dan"}),
        ("555-4321", {"dan"}),
        ("(212) 555-0103", {"cat"}),
        ("n/a", {"eve"}),  # the number as entered
        ("zzz", set()),
    ],
)
def test_it_searches_by_name_and_any_part_of_the_number(teammate_client, people, query, expected):
    response = teammate_client.get("/contacts/", {"filter": "all", "q": query})
    assert {c.first_name.lower() for c in listed(response)} == expected


def test_it_never_lists_another_organizations_contacts(teammate_client, other_org, people):
    make_contact(other_org, "+12125550199", first_name="Zed")
    response = teammate_client.get("/contacts/", {"filter": "all"})
    assert "Zed" not in response.content.decode()
    assert tab_counts(response)["all"] == 5


def test_only_managers_see_the_import_button(teammate_client, owner_client, people):
    assert IMPORT_URL not in teammate_client.get("/contacts/").content.decode()
    assert IMPORT_URL in owner_client.get("/contacts/").content.decode()


def test_dates_are_shown_in_the_organizations_time_zone(teammate_client, org, people):
    late_evening_in_new_york = datetime(2026, 2, 2, 3, 30, tzinfo=UTC)  # Feb 1, 22:30 there
    NumberState.objects.filter(phone=people["cat"].phone_e164).update(
        opted_out_at=late_evening_in_new_york
    )
    page = teammate_client.get("/contacts/", {"filter": "opted_out"}).content.decode()
    assert "Opted out · Staff · Feb 1, 2026" in page


def test_the_organizations_time_zone_is_for_its_requests_only(teammate_client, people):
    teammate_client.get("/contacts/")
    # The thread serves other requests next (the admin, the login page): they are not in it.
    assert timezone.get_current_timezone_name() == "UTC"


CONTACT_LIST_QUERIES = 9


def add_contacts(org, owner, count, start):
    for n in range(start, start + count):
        contact = make_contact(org, f"+1212400{n:04d}", first_name=f"Member{n}")
        if n % 3 == 0:
            NumberState.objects.of(org=org, phone=contact.phone_e164).mark_invalid(by=owner)
        elif n % 3 == 1:
            NumberState.objects.of(org=org, phone=contact.phone_e164).opt_out(
                reason="staff", by=owner
            )


@pytest.mark.parametrize("query", ["", "?filter=all&q=Member", "?filter=invalid"])
def test_the_list_query_count_does_not_grow_with_contacts(
    teammate_client, org, owner, django_assert_max_num_queries, query
):
    add_contacts(org, owner, 5, 0)
    teammate_client.get(f"/contacts/{query}")  # the session's first request
    cache.clear()
    with django_assert_max_num_queries(CONTACT_LIST_QUERIES) as few:
        teammate_client.get(f"/contacts/{query}")
    add_contacts(org, owner, 55, 5)
    cache.clear()
    with django_assert_max_num_queries(CONTACT_LIST_QUERIES) as many:
        response = teammate_client.get(f"/contacts/{query}")
    assert len(listed(response)) >= 2
    assert len(many) == len(few)


# The profile -------------------------------------------------------------------------------------


def test_the_profile_shows_the_state_messages_and_history(teammate_client, org, people):
    bob = people["bob"]
    sender = make_sender(org)
    make_message(bob, sender, status="delivered", body="Welcome to the club")
    make_message(bob, sender, status="undelivered", error_code=30003, body="Class moved")
    make_message(bob, sender, status="skipped", skip_reason="marked_invalid", body="Reminder")
    page = teammate_client.get(f"/contacts/{bob.pk}/").content.decode()
    assert "This number is marked as invalid." in page
    assert 'title="Marked invalid by staff">Invalid</span>' in page
    history = page.split('id="history-title"', 1)[1].split("</section>", 1)[0]
    assert "Welcome to the club" in history and ">Delivered</span>" in history
    assert 'title="Unreachable">Undelivered</span>' in history
    assert 'title="Marked invalid">Skipped</span>' in history
    audit = page.split('id="audit-title"', 1)[1].split("</section>", 1)[0]
    assert "owner" in audit and "Marked invalid" in audit and "Wrong person" in audit


def test_the_profile_shows_an_opt_out_with_its_reason_and_date(teammate_client, org, people):
    cat = people["cat"]
    page = teammate_client.get(f"/contacts/{cat.pk}/").content.decode()
    opted_out_at = NumberState.objects.get(phone=cat.phone_e164).opted_out_at
    assert f"<strong>Opted out</strong> (Staff) on {local_day(org, opted_out_at)}" in page


def test_the_profile_shows_the_line_type(teammate_client, org, people):
    NumberFacts.objects.create(
        phone=people["ann"].phone_e164, line_type="mobile", carrier_name="Big Wireless"
    )
    page = teammate_client.get(f"/contacts/{people['ann'].pk}/").content.decode()
    assert "Mobile · Big Wireless" in page


def test_the_profile_of_another_organization_is_not_found(outsider_client, people):
    assert outsider_client.get(f"/contacts/{people['ann'].pk}/").status_code == 404


# Changing the phone number -----------------------------------------------------------------------


@pytest.fixture
def flagged_member(org):
    """A member whose number was flagged automatically, with a conversation."""
    member = make_contact(org, "+12125550150", first_name="Liz", last_name="Park")
    make_message(
        member, make_sender(org), status="undelivered", error_code=30006, body="Old history"
    )
    NumberState.objects.of(org=org, phone=member.phone_e164).flag_automatically(
        code="lookup", reason="Landline; not SMS-capable", cause="line-type lookup"
    )
    return member


def change_phone(client, contact, phone, note=""):
    return client.post(f"/contacts/{contact.pk}/phone/", {"phone": phone, "note": note})


def test_a_new_number_frees_a_member_from_an_automatic_flag(
    teammate_client, org, teammate, flagged_member
):
    assert (
        eligibility.check_contacts(Contact.objects.filter(pk=flagged_member.pk), org=org)
        .get()
        .skip_reason
        == "marked_invalid"
    )
    response = change_phone(teammate_client, flagged_member, "(212) 555-0111", "New mobile")
    assert response.status_code == 302
    assert response["Location"] == f"/contacts/{flagged_member.pk}/"
    assert flash(response) == [("success", "Success: the phone number is now (212) 555-0111.")]
    flagged_member.refresh_from_db()
    assert (flagged_member.phone_raw, flagged_member.phone_e164) == (
        "(212) 555-0111",
        "+12125550111",
    )
    page = teammate_client.get(f"/contacts/{flagged_member.pk}/").content.decode()
    card = page.split('<section id="contact-card"', 1)[1].split("</section>", 1)[0]
    assert ">Invalid</span>" not in card
    assert "This number is marked as invalid." not in card
    checked = eligibility.check_contacts(Contact.objects.filter(pk=flagged_member.pk), org=org)
    assert checked.get().skip_reason is None


def test_the_old_number_keeps_its_flag_and_the_history_stays(
    teammate_client, org, teammate, flagged_member
):
    conversation = flagged_member.conversation
    change_phone(teammate_client, flagged_member, "(212) 555-0111", "New mobile")
    old = NumberState.objects.get(organization=org, phone="+12125550150")
    assert (old.invalid_source, old.invalid_code) == ("automatic", "lookup")
    flagged_member.refresh_from_db()
    assert flagged_member.conversation == conversation
    page = teammate_client.get(f"/contacts/{flagged_member.pk}/").content.decode()
    assert "Old history" in page
    event = AuditEvent.objects.get(action="phone_changed")
    assert (event.actor, event.contact, event.note, event.source_page) == (
        teammate,
        flagged_member,
        "New mobile",
        "contact",
    )
    assert event.before == {"phone_raw": "+12125550150", "phone_e164": "+12125550150"}
    assert event.after == {"phone_raw": "(212) 555-0111", "phone_e164": "+12125550111"}
    assert "Phone number changed" in page


def test_a_new_number_opens_the_composer_again(teammate_client, flagged_member):
    url = f"/conversations/{flagged_member.conversation.pk}/"
    assert "/send/" not in teammate_client.get(url).content.decode().split('id="composer"')[1]
    change_phone(teammate_client, flagged_member, "212-555-0111")
    assert "/send/" in teammate_client.get(url).content.decode().split('id="composer"')[1]


def test_a_new_number_brings_the_state_it_already_has(teammate_client, org, owner, people):
    # Bob's number is marked invalid; Ann takes it.
    change_phone(teammate_client, people["ann"], people["bob"].phone_raw)
    page = teammate_client.get(f"/contacts/{people['ann'].pk}/").content.decode()
    assert "This number is marked as invalid." in page


def test_a_new_number_is_looked_up(
    teammate_client, org, people, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        change_phone(teammate_client, people["ann"], "(212) 555-0155")
    assert NumberFacts.objects.get(phone="+12125550155").line_type == "landline"
    state = NumberState.objects.get(organization=org, phone="+12125550155")
    assert (state.invalid_source, state.invalid_code) == ("automatic", "lookup")


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("n/a", "Not a phone number"),
        ("212555011", "Wrong number of digits"),
        ("911", "Short code; not allowed as a destination"),
    ],
)
def test_bad_input_is_saved_as_entered_with_a_warning(teammate_client, people, raw, reason):
    ann = people["ann"]
    response = change_phone(teammate_client, ann, raw)
    assert response.status_code == 302
    assert flash(response) == [("warning", f"Saved, but this number can't be texted: {reason}.")]
    ann.refresh_from_db()
    assert (ann.phone_raw, ann.phone_e164, ann.phone_status, ann.phone_error) == (
        raw,
        "",
        "invalid_number",
        reason,
    )
    page = teammate_client.get(f"/contacts/{ann.pk}/").content.decode()
    assert f"This phone number can't be texted:</strong> {reason}" in page
    event = AuditEvent.objects.get(action="phone_changed")
    assert event.phone == "+12125550101" and event.after["phone_raw"] == raw


def test_an_empty_number_is_saved_with_a_warning(teammate_client, people):
    response = change_phone(teammate_client, people["ann"], "")
    assert flash(response) == [("warning", "Saved without a phone number.")]
    people["ann"].refresh_from_db()
    assert people["ann"].phone_status == "missing"


def test_a_number_too_long_for_the_form_is_refused(teammate_client, people):
    response = change_phone(teammate_client, people["ann"], "1" * 65)
    assert response.status_code == 400
    people["ann"].refresh_from_db()
    assert people["ann"].phone_e164 == "+12125550101"
    assert not AuditEvent.objects.filter(action="phone_changed").exists()


# CSV import --------------------------------------------------------------------------------------


def upload(client, content, name="members.csv", **fields):
    if isinstance(content, str):
        content = content.encode()
    return client.post(IMPORT_URL, {"file": SimpleUploadedFile(name, content, "text/csv")} | fields)


SMALL = """member_id,first_name,last_name,phone,email
M100,Ann,Lee,(212) 555-0111,ann@example.com
,Bob,Ray,212-555-0112,bob@example.com
,Cat,Ng,n/a,
,Dan,Ortiz,212555011,
,Bobby,Ray,+1 212 555 0112,
"""


@pytest.fixture
def member(org):
    return make_contact(org, "+12125550101", first_name="Ann", last_name="Lee", external_id="M100")


def test_a_small_file_is_imported_at_once_with_a_result_for_every_row(
    owner_client, org, owner, member
):
    response = upload(owner_client, SMALL)
    job = ContactImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/contacts/import/{job.pk}/"
    assert (job.state, job.total_rows, job.processed_rows, job.created_by) == ("done", 5, 5, owner)
    assert job.counts == {"updated": 1, "imported": 1, "invalid_number": 2, "duplicate": 1}
    results = [(r.line, r.outcome, r.reason) for r in job.rows.order_by("line")]
    assert results == [
        (2, "updated", ""),
        (3, "imported", ""),
        (4, "invalid_number", "Not a phone number"),
        (5, "invalid_number", "Wrong number of digits"),
        (6, "duplicate", "Same number as an earlier row"),
    ]
    member.refresh_from_db()
    assert (member.phone_e164, member.email) == ("+12125550111", "ann@example.com")
    cat = Contact.objects.get(organization=org, first_name="Cat")
    assert (cat.phone_raw, cat.phone_status) == ("n/a", "invalid_number")  # saved, not dropped
    assert not Contact.objects.filter(first_name="Bobby").exists()


def test_a_number_changed_by_import_is_audited_like_an_edit(owner_client, org, owner, member):
    upload(owner_client, SMALL)
    event = AuditEvent.objects.get(contact=member, action=AuditEvent.Action.PHONE_CHANGED)
    assert (event.actor, event.source_page, event.phone) == (owner, "import", "+12125550111")
    assert event.before["phone_e164"] == "+12125550101"
    assert event.after["phone_e164"] == "+12125550111"
    assert "members.csv, line 2" in event.note
    assert AuditEvent.objects.filter(action=AuditEvent.Action.PHONE_CHANGED).count() == 1


def test_an_imported_number_that_is_already_invalid_shows_under_invalid_at_once(
    owner_client, org, owner, member
):
    NumberState.objects.of(org=org, phone="+12125550112").mark_invalid(by=owner)
    before = owner_client.get("/contacts/?filter=invalid")
    assert listed(before) == [] and tab_counts(before)["invalid"] == 0
    upload(owner_client, SMALL)
    after = owner_client.get("/contacts/?filter=invalid")  # the counts are not 30 s stale
    assert [c.first_name for c in listed(after)] == ["Bob"] and tab_counts(after)["invalid"] == 1


def test_the_result_page_shows_every_row_and_the_counts(owner_client, member):
    upload(owner_client, SMALL)
    job = ContactImport.objects.get()
    page = owner_client.get(f"/contacts/import/{job.pk}/").content.decode()
    assert "Import finished:</strong> 5 rows." in page
    for label, count in [
        ("Imported", 1),
        ("Updated", 1),
        ("Invalid number", 2),
        ("Duplicate", 1),
        ("Error", 0),
    ]:
        assert f"{label}: {count}</a>" in page
    table = page.split('id="import-rows"', 1)[1]
    assert re.findall(r"<tr><td>(\d+)</td>", table) == ["2", "3", "4", "5", "6"]
    assert "Not a phone number" in table and "Same number as an earlier row" in table
    assert "212555011" in table  # the number as entered


def test_the_result_page_filters_by_outcome(owner_client, member):
    upload(owner_client, SMALL)
    job = ContactImport.objects.get()
    page = owner_client.get(f"/contacts/import/{job.pk}/?outcome=invalid_number").content.decode()
    table = page.split('id="import-rows"', 1)[1]
    assert re.findall(r"<tr><td>(\d+)</td>", table) == ["4", "5"]


def test_new_numbers_are_looked_up_and_a_landline_is_flagged(
    owner_client, org, django_capture_on_commit_callbacks
):
    content = "phone,name\n(212) 555-0150,Lee Land\n(212) 555-0111,Mo Bile\n"
    with django_capture_on_commit_callbacks(execute=True):
        upload(owner_client, content)
    assert NumberFacts.objects.get(phone="+12125550150").line_type == "landline"
    assert NumberFacts.objects.get(phone="+12125550111").line_type == "mobile"
    state = NumberState.objects.get(organization=org, phone="+12125550150")
    assert (state.invalid_source, state.invalid_code, state.invalid_reason) == (
        "automatic",
        "lookup",
        "Landline; not SMS-capable",
    )
    assert not NumberState.objects.filter(phone="+12125550111", invalid_source="automatic").exists()
    response = owner_client.get("/contacts/", {"filter": "invalid"})
    assert [c.name for c in listed(response)] == ["Lee Land"]


def test_a_bigger_file_is_imported_in_the_background(
    owner_client, org, django_capture_on_commit_callbacks
):
    count = importer.INLINE_ROWS + 1
    lines = ["member_id,first_name,last_name,phone"]
    lines += [f"B{n},Member,No{n},212-400-{n:04d}" for n in range(count)]
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(owner_client, "\n".join(lines) + "\n")
        job = ContactImport.objects.get()
        assert response["Location"] == f"/contacts/import/{job.pk}/"
        # Not imported during the request: the task runs once the upload has committed.
        assert (job.state, job.rows.count()) == ("queued", 0)
        page = owner_client.get(response["Location"]).content.decode()
        assert "Importing 0 of 301 rows" in page and 'hx-trigger="every 1s"' in page
    job.refresh_from_db()
    assert (job.state, job.processed_rows, job.counts) == ("done", count, {"imported": count})
    assert Contact.objects.filter(organization=org).count() == count
    shown = []
    for page_number in (1, 2):
        page = owner_client.get(f"/contacts/import/{job.pk}/?page={page_number}").content.decode()
        shown += re.findall(r"<tr><td>(\d+)</td>", page.split('id="import-rows"', 1)[1])
    assert shown == [str(line) for line in range(2, count + 2)]


def test_the_progress_poll_refreshes_the_page_when_the_import_is_done(owner_client, member):
    upload(owner_client, SMALL)
    job = ContactImport.objects.get()
    response = owner_client.get(
        f"/contacts/import/{job.pk}/",
        headers={"HX-Request": "true", "HX-Target": "import-progress"},
    )
    assert response["HX-Refresh"] == "true"


@pytest.mark.parametrize(
    "content, error",
    [
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00", "not a CSV text file"),  # an xlsx
        ("phone,first_name\n2125550111,Ann\n".encode("utf-16"), "not a CSV text file"),
        ("phone,first_name\n2125550111,Zoë\n".encode("latin-1"), "not UTF-8 text"),
        (b"name,email\nAnn Lee,ann@example.com\n", "No phone column found."),
        (b"", "The file is empty"),
        (b"\n\n", "The file is empty"),
        (b"phone,first_name\n", "The file has a header but no rows to import."),
    ],
)
def test_a_malformed_file_is_refused_and_changes_nothing(owner_client, org, member, content, error):
    before = list(Contact.objects.values())
    response = upload(owner_client, content)
    assert response.status_code == 302 and response["Location"] == IMPORT_URL
    [(level, text)] = flash(response)
    assert level == "error" and error in text
    assert not ContactImport.objects.exists()
    assert list(Contact.objects.values()) == before
    page = owner_client.get(IMPORT_URL).content.decode()
    assert error.replace("'", "&#x27;") in page


def test_a_nul_byte_deep_in_the_file_refuses_the_whole_file(owner_client, org, member):
    good_rows = "".join(f"212555{n:04d},Member {n}\n" for n in range(5000))
    assert len(good_rows) > 100 * 1024
    content = f"phone,first_name\n{good_rows}2125559999,Nu\x00ll\n2125559998,After\n".encode()
    before = list(Contact.objects.values())
    response = upload(owner_client, content)
    assert response.status_code == 302 and response["Location"] == IMPORT_URL
    [(level, text)] = flash(response)
    assert level == "error"
    assert "not a CSV text file (it contains binary data, on line 5,002)" in text
    assert not ContactImport.objects.exists()
    assert list(Contact.objects.values()) == before
    assert "binary data, on line 5,002" in owner_client.get(IMPORT_URL).content.decode()


def test_a_file_with_classic_mac_line_endings_is_read_line_by_line(owner_client, org):
    content = "first_name,last_name,phone\rAnn,Lee,212-555-0111\rBob,Ray,212-555-0112\r"
    content += "Cat,Ng,212-555-0113\r"
    response = upload(owner_client, content)
    job = ContactImport.objects.get()
    assert response["Location"] == f"/contacts/import/{job.pk}/"
    assert (job.total_rows, job.counts) == (3, {"imported": 3})
    imported = Contact.objects.filter(organization=org).order_by("first_name")
    assert [(c.first_name, c.last_name, c.phone_e164) for c in imported] == [
        ("Ann", "Lee", "+12125550111"),
        ("Bob", "Ray", "+12125550112"),
        ("Cat", "Ng", "+12125550113"),
    ]


def test_uploading_without_a_file_says_so(owner_client):
    response = owner_client.post(IMPORT_URL, {})
    assert flash(response) == [("error", "Choose a CSV file to upload.")]
    assert not ContactImport.objects.exists()


# A phone that belongs to another contact (one number, one member) ------------------------------

SHARED = """member_id,first_name,last_name,phone
M200,Sam,Allen,(212) 555-0123
M300,Joe,Park,212-555-0177
M301,Joanne,Park,+1 212 555 0177
M302,Lee,Fox,212-555-0188
"""


@pytest.fixture
def chloe(org):
    return make_contact(org, "+12125550123", first_name="Chloe", last_name="Allen")


def imported(job):
    return [(r.line, r.outcome, r.reason) for r in job.rows.order_by("line")]


def test_a_row_on_a_taken_phone_is_skipped_by_default_and_says_whose_it_is(
    owner_client, org, chloe
):
    upload(owner_client, SHARED)
    job = ContactImport.objects.get()
    assert job.on_duplicate_phone == "skip"
    assert imported(job) == [
        (2, "duplicate_phone", "Matches Chloe Allen; row skipped"),
        (3, "imported", ""),
        (4, "duplicate_phone", "Same phone as line 3 (Joe Park); row skipped"),
        (5, "imported", ""),
    ]
    assert job.counts == {"duplicate_phone": 2, "imported": 2}
    assert list(
        Contact.objects.filter(organization=org).order_by("id").values_list("first_name", flat=True)
    ) == ["Chloe", "Joe", "Lee"]
    page = owner_client.get(f"/contacts/import/{job.pk}/").content.decode()
    assert "Duplicate phone: 2" in page
    assert "Matches Chloe Allen; row skipped" in page


def test_update_puts_the_row_onto_the_contact_that_has_the_phone(owner_client, org, chloe):
    upload(owner_client, SHARED, on_duplicate_phone="update")
    job = ContactImport.objects.get()
    assert imported(job)[:2] == [
        (2, "duplicate_phone", "Matches Chloe Allen; updated that contact"),
        (3, "imported", ""),
    ]
    chloe.refresh_from_db()
    assert (chloe.first_name, chloe.external_id) == ("Sam", "M200")
    joe = Contact.objects.get(organization=org, external_id="M300")
    assert joe.first_name == "Joanne"  # line 4 went onto the contact line 3 made
    assert Contact.objects.filter(organization=org, phone_e164="+12125550177").count() == 1
    assert Contact.objects.filter(organization=org).count() == 3


def test_keep_both_makes_a_second_contact_and_still_reports_it(owner_client, org, chloe):
    upload(owner_client, SHARED, on_duplicate_phone="keep")
    job = ContactImport.objects.get()
    assert imported(job)[:2] == [
        (2, "duplicate_phone", "Matches Chloe Allen; kept both"),
        (3, "imported", ""),
    ]
    assert job.counts == {"duplicate_phone": 2, "imported": 2}
    assert Contact.objects.filter(organization=org, phone_e164="+12125550123").count() == 2
    assert Contact.objects.filter(organization=org).count() == 5


def test_a_contact_matched_by_member_id_is_not_a_duplicate_phone(owner_client, org, chloe):
    chloe.external_id = "M200"
    chloe.save()
    upload(owner_client, SHARED)
    assert imported(ContactImport.objects.get())[0] == (2, "updated", "")


def test_the_import_page_offers_the_three_choices_skip_first(owner_client):
    page = owner_client.get(IMPORT_URL).content.decode()
    for value in ("skip", "update", "keep"):
        assert f'value="{value}"' in page
    assert re.search(r'value="skip"[^>]*checked', page)


def test_an_unknown_choice_is_refused_without_importing(owner_client, org):
    response = upload(owner_client, SHARED, on_duplicate_phone="merge")
    assert response.status_code == 302 and response["Location"] == IMPORT_URL
    assert not ContactImport.objects.exists() and not Contact.objects.exists()


def test_staff_may_not_import(teammate_client, org):
    assert teammate_client.get(IMPORT_URL).status_code == 403
    assert upload(teammate_client, SMALL).status_code == 403
    assert not ContactImport.objects.exists()
    assert not Contact.objects.exists()


def test_another_organizations_import_is_not_found(outsider_client, owner_client, member):
    upload(owner_client, SMALL)
    job = ContactImport.objects.get()
    assert outsider_client.get(f"/contacts/import/{job.pk}/").status_code == 404


def test_the_import_page_lists_recent_imports(owner_client, member):
    upload(owner_client, SMALL, name="january.csv")
    page = owner_client.get(IMPORT_URL).content.decode()
    assert "january.csv" in page and "5 rows" in page
