"""The Broadcasts pages and the broadcast machinery behind them (SPEC §5, §7, §9): the preview
counts, the time estimate, quiet hours, starting in bulk and releasing a little ahead of the
sender's pace, progress, cancelling without sending or losing anything, the circuit breaker,
Sample Text, and the `broadcast` command."""

import json
import re
from datetime import datetime, time, timedelta
from io import StringIO
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from config import pacing
from contacts import phones
from contacts.models import Contact
from conversations import broadcasts, bulksend, sending
from conversations.backends import get_backend
from conversations.management.commands.broadcast import Command as BroadcastCommand
from conversations.models import Broadcast, Conversation, Message, Sender
from deliverability import eligibility, outcomes
from deliverability.models import NumberFacts, NumberState, OrgAlert, ReviewItem, SkipReason
from tests.factories import make_contact, make_message, make_org_and_manager, make_sender
from tests.isolation import fresh, rows_for_the_module
from tests.isolation import org as org  # noqa: F401 - the world's, or an empty one
from tests.isolation import owner as owner  # noqa: F401

HTMX = {"HX-Request": "true"}
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(autouse=True)
def _no_pacing_sleep(monkeypatch):
    """Sends keep their slots but do not sleep for them: pacing has its own tests."""

    def no_sleep(key, rate, **options):
        return pacing.wait_for_slot(key, rate, sleep=lambda seconds: None, window=False)

    monkeypatch.setattr(sending, "wait_for_slot", no_sleep)
    monkeypatch.setattr(bulksend, "wait_for_slot", no_sleep)


@pytest.fixture
def outbox():
    return get_backend("locmem").outbox


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The club's organization, its manager and its contacts, made once for the module; each
    test reads fresh copies, and what it changes is rolled back after it."""
    with rows_for_the_module(django_db_blocker):
        org, owner = make_org_and_manager()
        yield SimpleNamespace(org=org, owner=owner, club=_club(org, owner))


@pytest.fixture
def club(org, world):
    """30 sendable contacts and one in each state the checks skip, sending all day."""
    org.quiet_hours_start, org.quiet_hours_end = time(0, 0), time(23, 59, 59)
    org.save()
    made = world.club
    contacts = Contact.objects.in_bulk(
        [c.pk for c in made["sendable"]] + [c.pk for c in made["skipped"].values()]
    )
    return {
        "org": org,
        "sender": fresh(made["sender"]),
        "sendable": [contacts[c.pk] for c in made["sendable"]],
        "skipped": {key: contacts[c.pk] for key, c in made["skipped"].items()},
    }


def _club(org, owner):
    """30 sendable contacts and one in each state the checks skip."""
    sender = make_sender(org, throughput=1)
    sendable = [make_contact(org, f"+1212400{n:04d}", first_name=f"Member{n}") for n in range(30)]
    skipped = {
        "opted_out": make_contact(org, "+12125550101"),
        "marked_invalid": make_contact(org, "+12125550102"),
        "invalid_number": make_contact(org, "n/a"),
        "landline": make_contact(org, "+12125550150"),
        "paused": make_contact(org, "+12125550103"),
        "recent_errors": make_contact(org, "+12125550104"),
        "global_lifetime_error_count": make_contact(org, "+12125550105"),
        # A second member on the first one's number: one number, one text.
        "duplicate_number": make_contact(org, "+12124000000", first_name="Partner"),
    }
    NumberState.objects.of(org=org, phone=skipped["opted_out"].phone_e164).opt_out(
        reason="stop_keyword", cause="STOP"
    )
    NumberState.objects.of(org=org, phone=skipped["marked_invalid"].phone_e164).mark_invalid(
        by=owner
    )
    NumberFacts.objects.create(phone=skipped["landline"].phone_e164, line_type="landline")
    NumberState.objects.of(org=org, phone=skipped["paused"].phone_e164).pause(
        until=timezone.now() + timedelta(days=3), by=owner
    )
    now = timezone.now()
    for minutes in range(5):
        outcomes.record_number_error(
            org=org,
            phone=skipped["recent_errors"].phone_e164,
            at=now - timedelta(minutes=minutes + 1),
            code=30003,
        )
    NumberFacts.objects.create(
        phone=skipped["global_lifetime_error_count"].phone_e164, errors_since_heartbeat=6
    )
    return {"org": org, "sender": sender, "sendable": sendable, "skipped": skipped}


def with_a_reply_waiting_for_review(club):
    """One more recipient: a possible opt-out waits in the Review queue (pending_review)."""
    org = club["org"]
    contact = make_contact(org, "+12125550106")
    reply = "I want to cancel my membership"
    now = timezone.now()
    ReviewItem.objects.create(
        organization=org,
        phone=contact.phone_e164,
        body=reply,
        kind=ReviewItem.Kind.OPT_OUT,
        rule="mentions_stop",
        received_at=now,
        due_at=now + timedelta(days=14),
    )
    club["skipped"]["pending_review"] = contact
    return club


def form(club, **fields):
    return {"sender": club["sender"].pk, "audience": "all", "body": "Pool closed today"} | fields


# Preview -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, audience",
    [
        ({"audience": "all"}, lambda org: Contact.objects.filter(organization=org)),
        ({"audience": "active"}, lambda org: broadcasts.audience(org, "active")),
        (
            {"audience": "filter", "filter": "all", "q": "Member1"},
            lambda org: broadcasts.audience(org, "filter", {"filter": "all", "q": "Member1"}),
        ),
    ],
)
def test_the_preview_counts_are_the_checks_counts(owner_client, org, club, fields, audience):
    response = owner_client.post("/broadcasts/preview/", form(club, **fields), headers=HTMX)
    assert response.status_code == 200
    preview = response.context["preview"]
    counts = eligibility.skip_counts(audience(org), org=org)
    assert preview.sendable == counts.pop("sendable")
    assert preview.skipped == {reason: n for reason, n in counts.items() if n}
    assert preview.total == audience(org).count()


def test_the_preview_names_every_skip_reason_with_its_count(owner_client, club):
    with_a_reply_waiting_for_review(club)
    response = owner_client.post("/broadcasts/preview/", form(club), headers=HTMX)
    page = response.content.decode()
    assert "<strong>30</strong> of 39 recipients will be sent the message (1 segment each)" in page
    for reason in SkipReason:
        assert f'<td>{reason.label}</td><td class="text-end">1</td>' in page
    assert response.context["preview"].skipped == {reason: 1 for reason in SkipReason.values}


def test_the_preview_counts_segments(owner_client, club):
    response = owner_client.post("/broadcasts/preview/", form(club, body="x" * 161), headers=HTMX)
    assert "(2 segments each)" in response.content.decode()


def test_the_preview_of_an_uploaded_list_counts_only_the_listed_numbers(owner_client, org, club):
    from django.core.files.uploadedfile import SimpleUploadedFile

    listing = SimpleUploadedFile("list.csv", b"212-400-0001\n+12125550101\n(212) 555-0199\n")
    data = form(club, audience="upload", numbers=listing)
    preview = owner_client.post("/broadcasts/preview/", data, headers=HTMX).context["preview"]
    assert (preview.total, preview.sendable, preview.skipped) == (2, 1, {"opted_out": 1})


def test_a_list_with_classic_mac_line_endings_is_read_line_by_line(owner_client, org, club):
    from django.core.files.uploadedfile import SimpleUploadedFile

    listing = SimpleUploadedFile("list.csv", b"212-400-0001\r+12125550101\r(212) 555-0199\r")
    data = form(club, audience="upload", numbers=listing)
    response = owner_client.post("/broadcasts/preview/", data, headers=HTMX)
    assert response.status_code == 200
    preview = response.context["preview"]
    assert (preview.total, preview.sendable, preview.skipped) == (2, 1, {"opted_out": 1})


def test_an_uploaded_list_survives_the_confirmation_step(owner_client, org, club):
    from django.core.files.uploadedfile import SimpleUploadedFile

    listing = SimpleUploadedFile("list.csv", b"212-400-0001\n+12125550101\n")
    asked = owner_client.post("/broadcasts/start/", form(club, audience="upload", numbers=listing))
    page = asked.content.decode()
    assert "<strong>Send to 1 person?</strong>" in page
    listed = re.search(r'name="listed" value="([^"]*)"', page).group(1)
    data = form(club, audience="upload", listed=listed.replace("&#x0A;", "\n"))
    response = owner_client.post("/broadcasts/start/", data | {"confirmed_sendable": 1})
    assert response.status_code == 302
    broadcast = Broadcast.objects.get()
    assert sorted(broadcast.messages.values_list("to_number", flat=True)) == [
        "+12124000001",
        "+12125550101",
    ]


def test_a_list_the_csv_reader_cannot_read_is_a_form_error(owner_client, club):
    from django.core.files.uploadedfile import SimpleUploadedFile

    listing = SimpleUploadedFile("list.csv", b"+12125550101\n" + b"x" * 200_000 + b"\n")
    data = form(club, audience="upload", numbers=listing)
    response = owner_client.post("/broadcasts/preview/", data, headers=HTMX)
    assert response.status_code == 200
    assert "The list could not be read as CSV" in response.content.decode()
    assert "preview" not in response.context


def test_a_preview_with_a_missing_body_shows_the_error(owner_client, club):
    response = owner_client.post("/broadcasts/preview/", form(club, body=""), headers=HTMX)
    assert "This field is required." in response.content.decode()
    assert "preview" not in response.context


# The time estimate -------------------------------------------------------------------------------


def test_the_estimate_counts_only_sending_hours(org):
    monday_9am = datetime(2026, 2, 2, 9, 0, tzinfo=NEW_YORK)  # the window is 08:00-21:00
    # 100,000 s of sending: 12 h on Monday, 13 h on Tuesday, 2 h 46 min 40 s on Wednesday.
    finish = broadcasts.estimate_finish(org, 100_000, 1, now=monday_9am)
    assert finish == datetime(2026, 2, 4, 10, 46, 40, tzinfo=NEW_YORK)
    assert broadcasts.estimate_finish(org, 3600, 1, now=monday_9am) == datetime(
        2026, 2, 2, 10, 0, tzinfo=NEW_YORK
    )


def test_the_estimate_waits_for_the_window_to_open(org):
    at_night = datetime(2026, 2, 2, 23, 0, tzinfo=NEW_YORK)
    finish = broadcasts.estimate_finish(org, 60, 1, now=at_night)
    assert finish == datetime(2026, 2, 3, 8, 1, tzinfo=NEW_YORK)


def test_a_window_ending_on_a_second_does_not_stall_the_estimate(org):
    # 23:59:59 used to be read as 23:59, before the moment the estimate stood at: it never ended.
    org.quiet_hours_start, org.quiet_hours_end = time(0, 0), time(23, 59, 59)
    midnight = datetime(2026, 2, 2, 0, 0, tzinfo=NEW_YORK)
    finish = broadcasts.estimate_finish(org, 2 * 86_400, 1, now=midnight)
    assert finish == datetime(2026, 2, 4, 0, 0, 2, tzinfo=NEW_YORK)


def test_a_window_that_ends_before_it_starts_has_no_estimate(org):
    org.quiet_hours_start, org.quiet_hours_end = time(22, 0), time(6, 0)
    assert broadcasts.estimate_finish(org, 100, 1) is None


def test_a_window_opening_on_a_second_opens_that_day(org):
    org.quiet_hours_start = time(8, 0, 30)
    just_before = datetime(2026, 2, 2, 8, 0, 10, tzinfo=NEW_YORK)
    assert broadcasts.next_window_start(org, just_before) == datetime(
        2026, 2, 2, 8, 0, 30, tzinfo=NEW_YORK
    )


def test_the_sender_choice_shows_its_pace(owner_client, club):
    make_sender(club["org"], kind=Sender.Kind.TOLL_FREE, throughput=3, label="Toll-free line")
    page = owner_client.get("/broadcasts/").content.decode()
    assert "(Long code, 1 msg/s)" in page and "Toll-free line (Toll-free, 3 msg/s)" in page


def fake_count(sendable):
    return lambda *args, **kwargs: {"sendable": sendable} | dict.fromkeys(SkipReason.values, 0)


def test_100k_at_one_a_second_warns_that_it_takes_more_than_a_day(org, monkeypatch):
    monkeypatch.setattr(eligibility, "skip_counts", fake_count(100_000))
    sender = Sender.objects.get(pk=make_sender(org, throughput=1).pk)  # as the form reads it
    preview = broadcasts.preview(
        org=org,
        sender=sender,
        body="Hi",
        kind="all",
        now=datetime(2026, 2, 2, 9, 0, tzinfo=NEW_YORK),
    )
    assert preview.duration > timedelta(days=1)
    assert preview.warning == (
        "At 1 message a second within sending hours, this takes more than a day. "
        "Consider a faster sender: a toll-free number sends 3 messages a second, a short code 100."
    )


def test_a_faster_sender_needs_no_warning(org, monkeypatch):
    monkeypatch.setattr(eligibility, "skip_counts", fake_count(100_000))
    short_code = make_sender(org, kind=Sender.Kind.SHORT_CODE, throughput=100)
    preview = broadcasts.preview(org=org, sender=short_code, body="Hi", kind="all")
    assert preview.warning == ""
    assert preview.duration < timedelta(days=1)


def test_the_preview_page_shows_the_warning_and_the_finish(owner_client, club, monkeypatch):
    monkeypatch.setattr(eligibility, "skip_counts", fake_count(100_000))
    page = owner_client.post("/broadcasts/preview/", form(club), headers=HTMX).content.decode()
    assert "this takes more than a day" in page
    assert "Consider a faster sender" in page
    assert "Estimated finish:" in page


def test_a_small_broadcast_has_no_warning(owner_client, club):
    page = owner_client.post("/broadcasts/preview/", form(club), headers=HTMX).content.decode()
    assert "more than a day" not in page


# Starting, releasing, progress -----------------------------------------------------------------


def start(client, club, **fields):
    """Send broadcast, then "Yes, send to N people" on the confirmation it asks for."""
    asked = client.post("/broadcasts/start/", form(club, **fields))
    assert asked.status_code == 200, asked.content.decode()[:500]
    sendable = asked.context["preview"].sendable
    response = client.post("/broadcasts/start/", form(club, confirmed_sendable=sendable, **fields))
    assert response.status_code == 302, response.content.decode()[:500]
    return Broadcast.objects.latest("id"), response


def test_send_broadcast_asks_first_with_the_sendable_count(owner_client, club):
    response = owner_client.post("/broadcasts/start/", form(club))
    page = response.content.decode()
    assert "<strong>Send to 30 people?</strong> 38 recipients in all" in page
    assert "Yes, send to 30 people</button>" in page
    assert not Broadcast.objects.exists()  # nothing sent before the answer


def test_a_confirmation_for_another_count_asks_again(owner_client, club):
    response = owner_client.post("/broadcasts/start/", form(club, confirmed_sendable=31))
    assert "<strong>Send to 30 people?</strong>" in response.content.decode()
    assert not Broadcast.objects.exists()


def test_starting_creates_every_message_at_once_skipped_ones_with_their_reason(
    owner_client, org, owner, club, outbox
):
    with_a_reply_waiting_for_review(club)
    broadcast, response = start(owner_client, club, name="Pool news")
    assert response["Location"] == f"/broadcasts/{broadcast.pk}/"
    assert (broadcast.state, broadcast.created_by, broadcast.recipient_count) == (
        "sending",
        owner,
        39,
    )
    messages = Message.objects.filter(broadcast=broadcast)
    assert messages.count() == 39
    skipped = dict(messages.filter(status="skipped").values_list("to_number", "skip_reason"))
    expected = {
        (contact.phone_e164 or contact.phone_raw): reason
        for reason, contact in club["skipped"].items()
    }
    assert skipped == expected
    assert broadcast.skipped_counts == dict.fromkeys(SkipReason.values, 1)
    held = messages.exclude(status="skipped")
    assert held.count() == 30
    assert set(held.values_list("status", "dispatch")) == {("pending", "held")}
    assert outbox == []  # nothing is sent before the dispatcher releases it


def test_starting_takes_a_few_queries_not_one_per_recipient(
    org, owner, club, django_assert_max_num_queries
):
    for n in range(100, 260):
        make_contact(org, f"+1212401{n:04d}")
    # 198 recipients; SQLite splits a bulk insert into statements of ~30 rows, hence 20.
    with django_assert_max_num_queries(20):
        broadcast = broadcasts.broadcast_start(
            org=org, sender=club["sender"], body="Hi", kind="all", by=owner
        )
    assert Message.objects.filter(broadcast=broadcast).count() == 198


def test_starting_says_how_many_it_goes_to(owner_client, club):
    _broadcast, response = start(owner_client, club)
    page = owner_client.get(response["Location"]).content.decode()
    assert "Success: the broadcast to 38 contacts started." in page


def test_a_start_with_no_recipients_is_refused(owner_client, club):
    response = owner_client.post(
        "/broadcasts/start/", form(club, audience="filter", q="nobody", confirmed_sendable=0)
    )
    assert response.status_code == 400
    assert "No contacts match this audience." in response.content.decode()
    assert not Broadcast.objects.exists()


def test_the_dispatcher_releases_at_most_twenty_seconds_of_sends(owner_client, club, monkeypatch):
    released = []
    monkeypatch.setattr(broadcasts, "enqueue", lambda task, pk, **options: released.append(pk))
    broadcast, _ = start(owner_client, club)
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 20  # 1 msg/s x 20 s
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 0  # still 20 waiting for a worker
    assert len(released) == 20
    messages = Message.objects.filter(broadcast=broadcast)
    assert messages.filter(dispatch="waiting").count() == 20
    assert messages.filter(dispatch="held").count() == 10


def test_a_faster_sender_releases_more(owner_client, org, club, monkeypatch):
    monkeypatch.setattr(broadcasts, "enqueue", lambda task, pk, **options: None)
    Sender.objects.filter(pk=club["sender"].pk).update(throughput=1.5)
    broadcast, _ = start(owner_client, club)
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 30  # ceil(1.5 x 20)


def test_progress_counts_what_staff_see(owner_client, club, outbox):
    broadcast, _ = start(owner_client, club)
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 20  # sent at once (tasks run in-line)
    assert len(outbox) == 20
    progress = broadcasts.progress(broadcast)
    assert {k: progress[k] for k in ("queued", "sent", "skipped", "total", "done")} == {
        "queued": 10,
        "sent": 20,
        "skipped": 8,
        "total": 38,
        "done": 28,
    }
    assert progress["percent"] == 73
    response = owner_client.get(
        f"/broadcasts/{broadcast.pk}/", headers=HTMX | {"HX-Target": "broadcast-progress"}
    )
    page = response.content.decode()
    assert page.lstrip().startswith('<section id="broadcast-progress"')
    assert "28 of 38 handled (73%)" in page
    assert "<td>10</td><td>20</td><td>0</td>" in page
    assert f"?broadcast={broadcast.pk}&amp;reason=skip:paused" in page


def test_a_broadcast_finishes_when_everything_is_handed_off(owner_client, club, outbox):
    broadcast, _ = start(owner_client, club)
    broadcasts.broadcast_dispatch(broadcast.pk)
    broadcasts.broadcast_dispatch(broadcast.pk)
    broadcasts.broadcast_dispatch(broadcast.pk)
    broadcast.refresh_from_db()
    assert broadcast.state == "finished" and broadcast.finished_at
    assert len(outbox) == 30
    assert sorted(sent["to"] for sent in outbox) == sorted(c.phone_e164 for c in club["sendable"])


def progress_fragment(client, broadcast):
    response = client.get(
        f"/broadcasts/{broadcast.pk}/", headers=HTMX | {"HX-Target": "broadcast-progress"}
    )
    return response.content.decode()


def test_a_finished_broadcast_page_updates_until_every_status_is_final(owner_client, club, outbox):
    broadcast, _ = start(owner_client, club)
    for _ in range(3):
        broadcasts.broadcast_dispatch(broadcast.pk)
    page = progress_fragment(owner_client, broadcast)
    assert "<strong>Finished</strong>" in page
    # 30 handed to Twilio, none delivered yet: the page keeps asking, with no Cancel any more.
    assert 'hx-trigger="every 2s"' in page and "waiting for the last delivery reports" in page
    assert "Cancel broadcast" not in page
    broadcast.messages.exclude(status="skipped").update(status="delivered")
    page = progress_fragment(owner_client, broadcast)
    assert "<td>0</td><td>0</td><td>30</td>" in page
    assert "hx-trigger" not in page


def test_the_failed_count_links_to_the_log_filtered_to_the_broadcast(
    owner_client, org, club, outbox
):
    broadcast, _ = start(owner_client, club, name="Pool news")
    broadcasts.broadcast_dispatch(broadcast.pk)
    one = broadcast.messages.exclude(status="skipped").first()
    Message.objects.filter(pk=one.pk).update(status="undelivered", error_code=30003)
    page = progress_fragment(owner_client, broadcast)
    link = f"/conversations/failed/?broadcast={broadcast.pk}&amp;status=not_delivered"
    assert f'<a href="{link}"' in page
    log = owner_client.get(link.replace("&amp;", "&")).content.decode()
    assert f'id="msg-{one.pk}"' in log
    assert "No failed or skipped messages match" not in log
    # The log says which filters are on, each with a way to clear it.
    assert "Broadcast: Pool news" in log
    assert "Status: Failed or undelivered" in log
    assert 'aria-label="Clear the broadcast filter"' in log
    assert '<a class="link-secondary" href="/conversations/failed/?status=not_delivered"' in log


def test_a_broadcast_is_the_latest_message_of_each_recipients_conversation(
    owner_client, club, outbox
):
    ann = club["sendable"][0]
    conversation = sending.conversation_for(ann)
    earlier = timezone.now() - timedelta(days=5)
    type(conversation).objects.filter(pk=conversation.pk).update(last_message_at=earlier)
    broadcast, _ = start(owner_client, club)
    conversation.refresh_from_db()
    assert conversation.last_message_at == broadcast.started_at
    assert conversation.last_message_direction == "outbound"
    assert conversation.last_message_preview == broadcast.body[:160]
    listing = owner_client.get("/conversations/").content.decode()
    assert listing.index(str(ann)) < listing.index("</main>")


def test_each_recipient_gets_the_message_once_even_if_dispatched_concurrently(
    owner_client, club, outbox
):
    broadcast, _ = start(owner_client, club)
    for _ in range(6):
        broadcasts.broadcast_dispatch(broadcast.pk)
    for message in Message.objects.filter(broadcast=broadcast):
        sending.message_send(message.pk)  # a duplicate task for every message
    assert len(outbox) == len({sent["to"] for sent in outbox}) == 30


# Quiet hours -------------------------------------------------------------------------------------


def test_outside_sending_hours_the_dispatcher_holds_with_the_reason_and_resume_time(
    owner_client, org, club, outbox
):
    org.quiet_hours_start, org.quiet_hours_end = time(8, 0), time(21, 0)
    org.save()
    broadcast, _ = start(owner_client, club)
    at_night = datetime(2026, 2, 2, 22, 30, tzinfo=NEW_YORK)
    assert broadcasts.broadcast_dispatch(broadcast.pk, now=at_night) == 0
    broadcast.refresh_from_db()
    assert broadcast.state == "held"
    assert broadcast.hold_reason == "Outside sending hours (8:00 AM–9:00 PM, America/New_York)."
    assert broadcast.resume_at == datetime(2026, 2, 3, 8, 0, tzinfo=NEW_YORK)
    assert outbox == []
    page = owner_client.get(f"/broadcasts/{broadcast.pk}/").content.decode()
    assert (
        "<strong>Held</strong>: Outside sending hours (8:00 AM–9:00 PM, America/New_York). "
        "Resumes Feb 3, 8:00 AM." in page
    )
    assert page.count("Feb 3, 8:00 AM") == 1
    # In the morning it goes on where it stopped.
    morning = datetime(2026, 2, 3, 8, 5, tzinfo=NEW_YORK)
    assert broadcasts.broadcast_dispatch(broadcast.pk, now=morning) == 20
    broadcast.refresh_from_db()
    assert (broadcast.state, broadcast.hold_reason, broadcast.resume_at) == ("sending", "", None)


def test_before_the_window_opens_the_broadcast_waits_for_the_same_day(owner_client, org, club):
    org.quiet_hours_start, org.quiet_hours_end = time(8, 0), time(21, 0)
    org.save()
    broadcast, _ = start(owner_client, club)
    early = datetime(2026, 2, 2, 6, 0, tzinfo=NEW_YORK)
    broadcasts.broadcast_dispatch(broadcast.pk, now=early)
    broadcast.refresh_from_db()
    assert broadcast.resume_at == datetime(2026, 2, 2, 8, 0, tzinfo=NEW_YORK)


def test_a_one_to_one_reply_is_not_held_by_quiet_hours(
    teammate_client, org, club, outbox, django_capture_on_commit_callbacks
):
    now = timezone.localtime(timezone.now(), org.tzinfo)
    org.quiet_hours_start = (now + timedelta(hours=2)).time()
    org.quiet_hours_end = (now + timedelta(hours=3)).time()
    org.save()
    contact = club["sendable"][0]
    make_message(contact, club["sender"])
    with django_capture_on_commit_callbacks(execute=True):
        teammate_client.post(f"/conversations/{contact.conversation.pk}/send/", {"body": "Hi"})
    assert [sent["to"] for sent in outbox] == [contact.phone_e164]


# Cancelling --------------------------------------------------------------------------------------


def test_cancel_mid_broadcast_sends_nothing_more_and_loses_nothing(
    owner_client, club, outbox, monkeypatch
):
    broadcast, _ = start(owner_client, club, audience="all")
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 20  # these 20 go out
    assert len(outbox) == 20
    # The next ones are released but their workers have not run yet.
    stalled = []
    monkeypatch.setattr(broadcasts, "enqueue", lambda task, ids, **options: stalled.append(ids))
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 10
    response = owner_client.post(f"/broadcasts/{broadcast.pk}/cancel/", follow=True)
    assert "Broadcast canceled: 10 messages will not be sent." in response.content.decode()
    # The stalled workers run now, and the periodic dispatcher comes by: nothing goes out.
    for ids in stalled:
        assert bulksend.messages_send(ids) == {}
        for pk in ids:
            sending.message_send(pk)
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 0
    assert len(outbox) == 20
    broadcast.refresh_from_db()
    assert broadcast.state == "canceled" and broadcast.canceled_at
    messages = Message.objects.filter(broadcast=broadcast)
    assert messages.filter(status="canceled").count() == 10
    assert not messages.filter(dispatch__in=["held", "waiting", "claimed"]).exists()
    # Nothing lost: every recipient has exactly one message.
    recipients = list(messages.values_list("conversation__contact_id", flat=True))
    assert len(recipients) == len(set(recipients)) == 38
    assert broadcasts.progress(broadcast)["canceled"] == 10


def test_cancel_before_anything_went_out_cancels_every_held_message(owner_client, club, outbox):
    broadcast, _ = start(owner_client, club)
    owner_client.post(f"/broadcasts/{broadcast.pk}/cancel/")
    messages = Message.objects.filter(broadcast=broadcast)
    assert messages.filter(status="canceled").count() == 30
    assert messages.filter(status="skipped").count() == 8  # stays what it was
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 0
    assert outbox == []


def test_a_finished_or_canceled_broadcast_cannot_be_canceled(owner_client, club):
    broadcast, _ = start(owner_client, club)
    owner_client.post(f"/broadcasts/{broadcast.pk}/cancel/")
    response = owner_client.post(f"/broadcasts/{broadcast.pk}/cancel/", follow=True)
    assert "This broadcast is not sending any more." in response.content.decode()
    assert "Cancel broadcast" not in response.content.decode()


# Circuit breaker ---------------------------------------------------------------------------------


def failures(org, sender, contact, count, code=21212, minutes_ago=1):
    at = timezone.now() - timedelta(minutes=minutes_ago)
    for _ in range(count):
        make_message(contact, sender, status="undelivered", error_code=code, final_at=at)


@pytest.mark.parametrize("codes", [[21212], [21606, 21610]])
def test_twenty_sender_errors_among_the_last_sends_hold_the_broadcast(
    owner_client, org, club, outbox, codes
):
    sender, contact = club["sender"], club["sendable"][0]
    failures(org, sender, contact, 20, code=codes[0])
    for code in codes[1:]:
        failures(org, sender, contact, 5, code=code)  # not a sender error: not counted
    broadcast, _ = start(owner_client, club)
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 0
    broadcast.refresh_from_db()
    assert broadcast.state == "held"
    assert broadcast.hold_reason == "Paused by the circuit breaker after many carrier errors."
    assert outbox == []
    alert = OrgAlert.objects.get(organization=org, kind="circuit_breaker")
    assert alert.sender_ref == sender.phone_number and alert.resolved_at is None
    sender.refresh_from_db()
    assert sender.broadcasts_paused_until > timezone.now() + timedelta(minutes=9)
    page = owner_client.get("/broadcasts/").content.decode()
    assert "Broadcasts paused by the circuit breaker" in page


def test_while_the_sender_is_paused_its_broadcasts_wait(owner_client, org, club):
    failures(org, club["sender"], club["sendable"][0], 20)
    first, _ = start(owner_client, club)
    broadcasts.broadcast_dispatch(first.pk)
    second, _ = start(owner_client, club)
    assert broadcasts.broadcast_dispatch(second.pk) == 0
    second.refresh_from_db()
    assert second.hold_reason == "Paused by the circuit breaker."
    assert OrgAlert.objects.get(kind="circuit_breaker").occurrences == 1


@pytest.mark.parametrize(
    "count, code, delivered_since, other_sender",
    [(19, 21212, 0, False), (20, 21212, 100, False), (20, 21212, 0, True), (40, 30007, 0, False)],
    ids=["19 errors", "before 100 good sends", "on another sender", "content errors"],
)
def test_fewer_or_older_or_elsewhere_errors_do_not_trip_the_breaker(
    owner_client, org, club, count, code, delivered_since, other_sender
):
    sender = make_sender(org) if other_sender else club["sender"]
    failures(org, sender, club["sendable"][0], count, code=code)
    for _ in range(delivered_since):
        make_message(club["sendable"][1], sender, status="delivered")
    broadcast, _ = start(owner_client, club)
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 20
    assert not OrgAlert.objects.exists()


def test_the_breaker_threshold_is_an_org_setting(owner_client, org, club):
    org.circuit_breaker_errors = 5
    org.save()
    failures(org, club["sender"], club["sendable"][0], 5)
    broadcast, _ = start(owner_client, club)
    assert broadcasts.broadcast_dispatch(broadcast.pk) == 0


# One number, one text ----------------------------------------------------------------------------


@pytest.fixture
def couple(org):
    """Two members on one number: the broadcast must text it once."""
    org.quiet_hours_start, org.quiet_hours_end = time(0, 0), time(23, 59, 59)
    org.save()
    sender = make_sender(org)
    chloe = make_contact(org, "+12125550123", first_name="Chloe", last_name="Allen")
    sam = make_contact(org, "(212) 555-0123", first_name="Sam", last_name="Allen")
    return {"org": org, "sender": sender, "chloe": chloe, "sam": sam}


def test_a_broadcast_to_two_contacts_on_one_number_sends_one_text(owner_client, couple, outbox):
    broadcast, _ = start(owner_client, couple)
    broadcasts.broadcast_dispatch(broadcast.pk)
    assert [sent["to"] for sent in outbox] == ["+12125550123"]
    messages = Message.objects.filter(broadcast=broadcast)
    by_contact = {m.conversation.contact_id: m for m in messages.select_related("conversation")}
    assert by_contact[couple["chloe"].pk].status != "skipped"
    sam = by_contact[couple["sam"].pk]
    assert (sam.status, sam.skip_reason, sam.provider_sid) == ("skipped", "duplicate_number", None)
    assert broadcast.skipped_counts == {"duplicate_number": 1}


def test_the_preview_counts_the_second_contact_on_a_number_as_skipped(owner_client, couple):
    response = owner_client.post("/broadcasts/preview/", form(couple), headers=HTMX)
    page = response.content.decode()
    assert "<strong>1</strong> of 2 recipients will be sent the message" in page
    assert '<td>Same number as another recipient</td><td class="text-end">1</td>' in page


def test_the_overview_sendable_is_the_preview_sendable(owner_client, club):
    preview = owner_client.post("/broadcasts/preview/", form(club), headers=HTMX)
    home = owner_client.get("/")
    assert home.context["health"]["sendable"] == preview.context["preview"].sendable == 30


def test_the_command_counts_the_duplicate(org, couple):
    counts = json.loads(run("--org", org.slug, "--to", "all", "--body", "Hi", "--json"))
    assert (counts["sendable"], counts["skipped"]) == (1, {"duplicate_number": 1})
    broadcast = Broadcast.objects.get(pk=counts["broadcast"])
    assert broadcast.messages.filter(skip_reason="duplicate_number").count() == 1


# Sample Text -------------------------------------------------------------------------------------


def sample(client, club, phone, htmx=False):
    data = {"phone": phone, "sender": club["sender"].pk, "body": "Test of the pool notice"}
    return client.post("/broadcasts/sample/", data, headers=HTMX if htmx else {})


@pytest.mark.parametrize(
    "state", ["paused", "landline", "recent_errors", "global_lifetime_error_count"]
)
def test_a_sample_text_skips_the_checks_other_than_opt_out_and_invalid(
    owner_client, club, outbox, state, django_capture_on_commit_callbacks
):
    phone = club["skipped"][state].phone_e164
    with django_capture_on_commit_callbacks(execute=True):
        response = sample(owner_client, club, phone)
    message = Message.objects.get(to_number=phone, is_test=True)
    assert response.status_code == 302
    assert response["Location"] == f"/broadcasts/?sample={message.pk}"
    assert (message.status, message.skip_reason) == ("queued", "")
    assert [sent["to"] for sent in outbox] == [phone]


@pytest.mark.parametrize("state", ["opted_out", "marked_invalid"])
def test_a_sample_text_still_honours_opt_out_and_the_invalid_flag(
    owner_client, club, outbox, state, django_capture_on_commit_callbacks
):
    phone = club["skipped"][state].phone_e164
    with django_capture_on_commit_callbacks(execute=True):
        sample(owner_client, club, phone)
    message = Message.objects.get(to_number=phone, is_test=True)
    assert (message.status, message.skip_reason) == ("skipped", state)
    assert outbox == []


def test_a_sample_text_to_a_non_contact_creates_no_contact_and_changes_no_broadcast(
    owner_client, org, club, outbox, django_capture_on_commit_callbacks
):
    before = owner_client.post("/broadcasts/preview/", form(club), headers=HTMX)
    contacts = Contact.objects.filter(organization=org).count()
    with django_capture_on_commit_callbacks(execute=True):
        sample(owner_client, club, "(212) 555-0177")
    assert [sent["to"] for sent in outbox] == ["+12125550177"]  # it was sent
    assert Contact.objects.filter(organization=org).count() == contacts
    assert not Contact.objects.filter(first_name="Sample Text").exists()
    message = Message.objects.get(is_test=True)  # stored for the log, with no conversation
    assert (message.to_number, message.conversation) == ("+12125550177", None)
    after = owner_client.post("/broadcasts/preview/", form(club), headers=HTMX)
    counts = [
        (p.total, p.sendable, p.skipped)
        for p in (before.context["preview"], after.context["preview"])
    ]
    assert counts[0] == counts[1]
    broadcast, _ = start(owner_client, club)
    assert broadcast.recipient_count == before.context["preview"].total == contacts


def test_a_sample_text_to_a_contact_leaves_the_contact_and_its_conversation_alone(
    owner_client, club, django_capture_on_commit_callbacks
):
    member = club["sendable"][0]
    with django_capture_on_commit_callbacks(execute=True):
        sample(owner_client, club, member.phone_e164)
    assert Message.objects.get(is_test=True).conversation is None
    assert not Conversation.objects.filter(contact=member).exists()
    page = owner_client.get("/conversations/").content.decode()
    assert "Test of the pool notice" not in page


def status_of(client, message):
    return client.get(f"/broadcasts/sample/{message.pk}/", headers=HTMX)


def test_the_outcome_shows_under_the_form_and_polls_until_final(
    owner_client, club, django_capture_on_commit_callbacks
):
    response = sample(owner_client, club, club["sendable"][0].phone_e164, htmx=True)
    message = Message.objects.get(is_test=True)
    page = response.content.decode()
    assert "<strong>Queued</strong>" in page
    assert f'hx-get="/broadcasts/sample/{message.pk}/"' in page and 'hx-trigger="every 2s"' in page
    Message.objects.filter(pk=message.pk).update(status="sent", provider_sid="SM1")
    page = status_of(owner_client, message).content.decode()
    assert "<strong>Sent</strong>" in page and "hx-get" in page
    Message.objects.filter(pk=message.pk).update(status="delivered")
    page = status_of(owner_client, message).content.decode()
    assert "<strong>Delivered</strong>" in page and "hx-get" not in page  # final: no more polls


def test_a_failed_sample_text_says_why_in_plain_words(owner_client, org, club):
    message = Message.objects.create(
        organization=org,
        to_number="+12125550161",
        direction="outbound",
        body="Test",
        is_test=True,
        status="undelivered",
        error_code=30005,
    )
    page = status_of(owner_client, message).content.decode()
    assert "<strong>Failed: Carrier response that the number does not exist</strong>" in page
    assert "hx-get" not in page


@pytest.mark.parametrize(
    "state, shown",
    [("opted_out", "Skipped: opted out"), ("marked_invalid", "Skipped: marked invalid")],
)
def test_a_sample_text_to_an_opted_out_or_invalid_number_says_it_was_skipped(
    owner_client, club, outbox, state, shown, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        sample(owner_client, club, club["skipped"][state].phone_e164, htmx=True)
    message = Message.objects.get(is_test=True)
    page = status_of(owner_client, message).content.decode()
    assert f"<strong>{shown}</strong>" in page and "hx-get" not in page
    assert outbox == []
    # Without JavaScript, the page the form redirects to shows it too.
    assert shown in owner_client.get(f"/broadcasts/?sample={message.pk}").content.decode()


def test_another_organizations_sample_text_outcome_is_not_found(
    owner_client, outsider_client, club
):
    sample(owner_client, club, club["sendable"][0].phone_e164)
    message = Message.objects.get(is_test=True)
    assert status_of(outsider_client, message).status_code == 404
    assert (
        str(message.to_number)
        not in outsider_client.get(f"/broadcasts/?sample={message.pk}").content.decode()
    )


def test_only_a_sample_text_has_an_outcome_fragment(owner_client, org, club):
    member = make_message(club["sendable"][0])
    assert status_of(owner_client, member).status_code == 404


def test_a_sample_text_to_a_number_that_cannot_be_texted_is_refused(owner_client, club):
    response = sample(owner_client, club, "n/a", htmx=True)
    toast = json.loads(response["HX-Trigger"])["toast"]
    assert toast == {
        "message": "This number can't be texted: Not a phone number.",
        "level": "danger",
    }
    assert not Message.objects.filter(is_test=True).exists()


def test_a_sample_text_with_htmx_answers_with_a_toast(owner_client, club):
    phone = club["sendable"][0].phone_e164
    response = sample(owner_client, club, phone, htmx=True)
    shown = phones.national(phone)
    assert json.loads(response["HX-Trigger"])["toast"] == {
        "message": f"Sample Text queued to {shown}.",
        "level": "success",
    }
    assert f'Sample Text to <span class="font-monospace"><span title="{phone}">{shown}</span>' in (
        response.content.decode()
    )


# The command line --------------------------------------------------------------------------------


def run(*args):
    out = StringIO()
    call_command("broadcast", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_the_counts_and_a_dry_run_sends_nothing(org, club, outbox):
    out = run("--org", org.slug, "--to", "all", "--body", "Hi", "--dry-run")
    assert out.splitlines() == [
        "sendable: 30",
        "skipped duplicate_number: 1",
        "skipped global_lifetime_error_count: 1",
        "skipped invalid_number: 1",
        "skipped landline: 1",
        "skipped marked_invalid: 1",
        "skipped opted_out: 1",
        "skipped paused: 1",
        "skipped recent_errors: 1",
        "dry run: nothing sent",
    ]
    assert not Broadcast.objects.exists() and not Message.objects.exists()
    assert outbox == []


def test_the_command_prints_json(org, club):
    counts = json.loads(
        run("--org", org.name, "--to", "active", "--body", "Hi", "--json", "--dry-run")
    )
    assert counts == {
        "sendable": 30,
        # The club has no reply waiting for review (see test_opt_out_replies_end_to_end.py).
        "skipped": {
            reason: 1
            for reason in SkipReason.values
            if reason not in {"opted_out", "pending_review"}
        },
    }


def test_the_command_counts_match_the_preview(org, club):
    counts = json.loads(
        run("--org", org.slug, "--to", "all", "--body", "Hi", "--json", "--dry-run")
    )
    preview = broadcasts.preview(org=org, sender=club["sender"], body="Hi", kind="all")
    assert (counts["sendable"], counts["skipped"]) == (preview.sendable, preview.skipped)


def test_the_command_starts_the_broadcast(org, club):
    second = make_sender(org, phone_number="+14155550999")
    out = run("--org", org.slug, "--to", "active", "--body", "Hi", "--sender", "(415) 555-0999")
    broadcast = Broadcast.objects.get()
    assert f"broadcast {broadcast.pk} started from {second}" in out
    assert (broadcast.sender, broadcast.recipient_count, broadcast.audience) == (
        second,
        37,
        "active",
    )
    assert Message.objects.filter(broadcast=broadcast).count() == 37


def test_the_command_defaults_to_the_first_sender(org, club):
    make_sender(org)
    counts = json.loads(run("--org", org.slug, "--to", "all", "--body", "Hi", "--json"))
    assert Broadcast.objects.get(pk=counts["broadcast"]).sender == club["sender"]


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--org", "nowhere", "--to", "active", "--body", "Hi"], "no organization named 'nowhere'"),
        (["--org", "riverside-test", "--to", "active", "--body", "  "], "--body is empty"),
        (
            [
                "--org",
                "riverside-test",
                "--to",
                "active",
                "--body",
                "Hi",
                "--sender",
                "+19995550000",
            ],
            "+19995550000 is not one of Riverside Test Club's senders",
        ),
    ],
)
def test_bad_arguments_raise_a_command_error_with_status_2(org, club, args, reason):
    with pytest.raises(CommandError) as error:
        run(*args)
    assert error.value.returncode == 2
    assert str(error.value) == reason
    assert not Broadcast.objects.exists()


def test_an_org_without_a_sender_is_refused(other_org):
    with pytest.raises(CommandError) as error:
        run("--org", other_org.slug, "--to", "all", "--body", "Hi")
    assert error.value.returncode == 2
    assert "has no sending number" in str(error.value)


@pytest.mark.parametrize(
    "args",
    [
        ["--org", "nowhere", "--to", "active", "--body", "Hi"],
        ["--org", "riverside-test", "--to", "everyone", "--body", "Hi"],
        ["--org", "riverside-test", "--body", "Hi"],
    ],
)
def test_from_the_shell_bad_arguments_exit_with_status_2_and_one_line(
    org, club, capsys, args, monkeypatch
):
    # run_from_argv closes every database connection when it ends, the test's own included.
    from django.core.management import base

    monkeypatch.setattr(base.connections, "close_all", lambda: None)
    with pytest.raises(SystemExit) as exit_:
        BroadcastCommand().run_from_argv(["manage.py", "broadcast", *args])
    assert exit_.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith(("CommandError: ", "manage.py broadcast: error: "))
    )
    assert not Broadcast.objects.exists()


def test_states_stay_untouched_by_a_dry_run(org, club):
    before = list(NumberState.objects.order_by("pk").values())
    run("--org", org.slug, "--to", "all", "--body", "Hi", "--dry-run")
    assert list(NumberState.objects.order_by("pk").values()) == before
