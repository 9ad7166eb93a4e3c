"""The Twilio history import (conversations.history): what an org's past messages at Twilio do
to its numbers, once, in order, for this org's senders only.

The locmem backend's `history_messages` stand in for the account's Messages list; the simulator's
history and the contract mock have their own tests at the end.
"""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from conversations import history
from conversations.backends import HistoryMessage, SimulatorBackend, get_backend
from conversations.models import HistoryImport, HistorySeen, Message
from deliverability import outcomes
from deliverability.models import (
    AuditEvent,
    InvalidSource,
    NumberFacts,
    NumberState,
    OptOutReason,
    ReviewItem,
)
from tests import factories

OURS = "+14155550100"  # the `sender` fixture's number
THEIRS = "+14155550999"  # another org's sender on the same Twilio account
MEMBER = "+12125550123"
OTHER = "+13105550114"
UNCLEAR = "I want to cancel my membership"

_sids = itertools.count(1)


def ago(days, hour=12):
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days) + timedelta(hours=hour)


def outbound(to, days, status="delivered", code=None, from_=OURS, hour=12):
    return HistoryMessage(
        sid=f"SM{next(_sids):032x}",
        direction="outbound",
        from_=from_,
        to=to,
        body="See you at the pool",
        status=status,
        error_code=code,
        sent_at=ago(days, hour),
    )


def inbound(from_, body, days, to=OURS, hour=13):
    return HistoryMessage(
        sid=f"SM{next(_sids):032x}",
        direction="inbound",
        from_=from_,
        to=to,
        body=body,
        status="received",
        error_code=None,
        sent_at=ago(days, hour),
    )


@pytest.fixture
def locmem():
    return get_backend("locmem")


@pytest.fixture
def account(locmem):
    """The Twilio account's Messages list."""
    return locmem.history_messages


def run_import(org, days=100):
    record = history.history_import_start(org=org, days=days, run_in_background=False)
    return history.history_import_run(record.pk)


def state_of(org, phone=MEMBER):
    return NumberState.objects.of(org=org, phone=phone)


def snapshot():
    """Everything an import may change, to compare two runs."""
    return {
        "states": list(NumberState.objects.order_by("id").values()),
        "facts": list(NumberFacts.objects.order_by("id").values()),
        "audit": AuditEvent.objects.count(),
        "reviews": ReviewItem.objects.count(),
        "messages": Message.objects.count(),
    }


# Replies ---------------------------------------------------------------------------------------


def test_an_inbound_stop_opts_out_without_a_confirmation_text(org, sender, contact, account):
    org.opt_out_confirmation = "You are unsubscribed."
    org.save()
    account.append(inbound(MEMBER, "Stop texting me please", 30))

    record = run_import(org)

    state = state_of(org)
    assert state.opt_out_reason == OptOutReason.STOP_KEYWORD
    assert get_backend("locmem").outbox == []  # no confirmation, no message at all
    assert Message.objects.count() == 0
    assert record.report["opt_outs"] == 1
    assert NumberFacts.objects.get(phone=MEMBER).last_heartbeat_at == ago(30, 13)


def test_a_stop_then_a_later_start_ends_opted_in(org, sender, contact, account):
    # Listed newest first, as Twilio lists them: the import replays oldest first.
    account.extend([inbound(MEMBER, "START", 10), inbound(MEMBER, "STOP", 20)])

    run_import(org)

    assert not state_of(org).is_opted_out
    actions = list(
        AuditEvent.objects.filter(phone=MEMBER).order_by("id").values_list("action", flat=True)
    )
    assert actions == [AuditEvent.Action.OPT_OUT, AuditEvent.Action.OPT_IN]


def test_a_start_then_a_later_stop_ends_opted_out(org, sender, contact, account):
    account.extend([inbound(MEMBER, "STOP", 10), inbound(MEMBER, "START", 20)])

    run_import(org)

    assert state_of(org).opt_out_reason == OptOutReason.STOP_KEYWORD


def test_an_ambiguous_reply_is_reported_not_acted_on(org, sender, contact, account):
    account.append(inbound(MEMBER, "I want to cancel my membership", 15))

    record = run_import(org)

    assert not state_of(org).is_opted_out
    assert ReviewItem.objects.count() == 0  # listed in the report, not queued
    assert record.report["ambiguous"] == 1
    [item] = record.ambiguous
    assert item["phone"] == MEMBER
    assert item["body"] == "I want to cancel my membership"
    assert "unclear" in item["rule"].lower()


def test_a_stop_from_a_number_without_a_contact_still_opts_it_out(org, sender, account):
    account.append(inbound("+13105550111", "unsubscribe", 5))

    run_import(org)

    assert state_of(org, "+13105550111").opt_out_reason == OptOutReason.STOP_KEYWORD


# Errors and deliveries -------------------------------------------------------------------------


def test_21610_opts_out_for_a_carrier_stop(org, sender, contact, account):
    account.append(outbound(MEMBER, 200, "failed", 21610))

    run_import(org, days=300)

    assert state_of(org).opt_out_reason == OptOutReason.CARRIER_STOP
    audit = AuditEvent.objects.get(phone=MEMBER)
    assert "21610" in audit.system_cause and "history" in audit.system_cause


def test_a_recent_30005_flags_the_number(org, sender, contact, account):
    account.extend([outbound(MEMBER, 10, "undelivered", 30005), outbound(MEMBER, 40)])

    record = run_import(org)

    state = state_of(org)
    assert state.invalid_source == InvalidSource.AUTOMATIC
    assert state.invalid_code == "30005"
    assert record.report["flags_set"] == 1


def test_an_error_older_than_80_days_sets_no_flag(org, sender, contact, account):
    account.append(outbound(MEMBER, 81, "undelivered", 30005))

    record = run_import(org)

    assert not state_of(org).is_invalid
    assert record.report["flags_too_old"] == 1


def test_an_error_of_79_days_flags(org, sender, contact, account):
    account.append(outbound(MEMBER, 79, "undelivered", 30005))

    run_import(org)

    assert state_of(org).is_invalid


def test_an_error_older_than_the_latest_delivery_sets_no_flag(org, sender, contact, account):
    # The 30005 is read first (oldest first); the later delivery disproves it.
    account.extend([outbound(MEMBER, 5), outbound(MEMBER, 10, "undelivered", 30005)])

    record = run_import(org)

    assert not state_of(org).is_invalid
    assert record.report["flags_disproved"] == 1
    assert NumberFacts.objects.get(phone=MEMBER).last_heartbeat_at == ago(5)


def test_a_delivery_recorded_before_the_import_also_disproves(org, sender, contact, account):
    outcomes.record_heartbeat(phone=MEMBER, at=timezone.now() - timedelta(days=1))
    account.append(outbound(MEMBER, 10, "undelivered", 30005))

    run_import(org)

    assert not state_of(org).is_invalid


def test_unreachable_errors_join_the_error_history_with_their_dates(org, sender, contact, account):
    account.extend(outbound(MEMBER, days, "undelivered", 30003) for days in (9, 8, 7, 6, 5))

    run_import(org)

    state = state_of(org)
    assert state.error_streak == 5
    assert state.streak_fifth_error_at == ago(9)
    assert not state.is_invalid  # unreachable errors count; they do not flag
    facts = NumberFacts.objects.get(phone=MEMBER)
    assert facts.error_count == 5 and facts.last_error_code == "30003"
    from deliverability import eligibility

    assert eligibility.check_number(org=org, phone=MEMBER, broadcast=True) == "recent_errors"


def test_a_delivery_is_a_heartbeat_and_ends_the_streak(org, sender, contact, account):
    account.extend(
        [outbound(MEMBER, 5), *(outbound(MEMBER, d, "undelivered", 30003) for d in (9, 8, 7))]
    )

    run_import(org)

    assert state_of(org).error_streak == 0
    facts = NumberFacts.objects.get(phone=MEMBER)
    assert facts.last_heartbeat_at == ago(5)
    assert facts.errors_since_heartbeat == 0


def test_content_and_sender_errors_leave_the_number_alone(org, sender, contact, account):
    account.extend(
        [outbound(MEMBER, 5, "undelivered", 30007), outbound(MEMBER, 4, "failed", 21408)]
    )

    record = run_import(org)

    state = state_of(org)
    assert not state.is_invalid and not state.is_opted_out and state.error_streak == 0
    assert record.report["other_errors"] == 2


# Idempotency, resumability, scope ----------------------------------------------------------------


def a_busy_history():
    return [
        inbound(MEMBER, "STOP", 30),
        inbound(MEMBER, "START", 20),
        outbound(MEMBER, 15),
        outbound(MEMBER, 9, "undelivered", 30003),
        inbound("+13105550111", "stop please", 12),
        outbound("+13105550112", 11, "undelivered", 30005),
        outbound("+13105550113", 11, "failed", 21610),
        inbound("+13105550114", "I want to cancel my membership", 3),
        outbound("+13105550115", 2),
    ]


def test_a_second_run_changes_nothing(org, sender, contact, account):
    account.extend(a_busy_history())
    first = run_import(org)
    before = snapshot()

    second = run_import(org)

    assert snapshot() == before
    assert second.pk != first.pk
    assert second.messages_applied == 0
    assert second.report == {"already_imported": len(account)}
    assert HistorySeen.objects.count() == len(account)


def interrupting(limit):
    """A Messages list that breaks (a dropped connection) after `limit` items of the stream."""
    backend = get_backend("locmem")

    class Breaking:
        calls = 0

        def history(self, *, after, before):
            for message in backend.history(after=after, before=before):
                if Breaking.calls >= limit:
                    raise ConnectionError("Connection reset by peer")
                Breaking.calls += 1
                yield message

    return Breaking()


def test_an_interrupted_import_resumes_to_the_same_result(
    org, sender, contact, account, monkeypatch
):
    account.extend(a_busy_history())
    reference_org = factories.make_org("Reference")
    # The same history replayed in one go, on another org with its own sender, for comparison.
    factories.make_sender(reference_org, phone_number="+14155550777")

    record = history.history_import_start(org=org, days=100, run_in_background=False)
    applied = []
    real_apply = history._Run.apply_once

    def dying_apply(run, message, number):
        if len(applied) == 4:  # mid-page: the fifth message of the list kills the worker
            raise OSError("worker lost")
        real_apply(run, message, number)
        applied.append(message.sid)

    monkeypatch.setattr(history._Run, "apply_once", dying_apply)
    with pytest.raises(OSError):
        history.history_import_run(record.pk)
    record.refresh_from_db()
    assert record.state == HistoryImport.State.INTERRUPTED
    assert "worker lost" in record.error
    assert record.messages_applied == 4
    monkeypatch.setattr(history._Run, "apply_once", real_apply)

    resumed = history.history_import_start(org=org, days=100, run_in_background=False)
    assert resumed.pk == record.pk  # the same import goes on
    done = history.history_import_run(record.pk)

    assert done.state == HistoryImport.State.FINISHED
    assert done.messages_applied == len(account)
    assert "already_imported" not in done.report
    assert not state_of(org).is_opted_out  # STOP then START, across the interruption
    assert state_of(org, "+13105550111").is_opted_out
    assert state_of(org, "+13105550112").invalid_code == "30005"
    assert state_of(org, "+13105550113").opt_out_reason == OptOutReason.CARRIER_STOP
    assert [a["phone"] for a in done.ambiguous] == ["+13105550114"]
    assert done.report["opt_outs"] == 2 and done.report["opt_ins"] == 1


def test_a_dropped_connection_mid_page_is_resumed(org, sender, contact, account):
    account.extend(a_busy_history())
    record = history.history_import_start(org=org, days=100, run_in_background=False)

    with pytest.raises(ConnectionError):
        history.history_import_run(record.pk, backend=interrupting(3))
    record.refresh_from_db()
    assert record.state == HistoryImport.State.INTERRUPTED
    assert record.first_day < record.cursor_day < record.last_day

    done = history.history_import_run(record.pk)

    assert done.state == HistoryImport.State.FINISHED
    assert done.messages_applied == len(account)
    assert not state_of(org).is_opted_out


def test_a_second_worker_does_not_run_an_import_held_by_another(org, sender, account):
    record = history.history_import_start(org=org, days=10, run_in_background=False)
    HistoryImport.objects.filter(pk=record.pk).update(
        lease_until=timezone.now() + timedelta(minutes=1)
    )

    assert history.history_import_run(record.pk) is None

    HistoryImport.objects.filter(pk=record.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)  # that worker died
    )
    assert history.history_import_run(record.pk).state == HistoryImport.State.FINISHED


def test_another_orgs_senders_messages_are_ignored(org, sender, contact, other_org, account):
    factories.make_sender(other_org, phone_number=THEIRS)
    factories.make_contact(other_org, MEMBER)
    account.extend(
        [
            inbound(MEMBER, "STOP", 10, to=THEIRS),
            outbound(MEMBER, 9, "failed", 21610, from_=THEIRS),
            outbound(MEMBER, 8, "undelivered", 30005, from_=THEIRS),
        ]
    )

    record = run_import(org)

    assert record.messages_read == 0
    assert NumberState.objects.filter(organization=org).count() == 0
    assert NumberFacts.objects.count() == 0
    # The other org's own import applies them.
    run_import(other_org)
    theirs = state_of(other_org)
    assert theirs.opt_out_reason == OptOutReason.STOP_KEYWORD and theirs.is_invalid
    assert not state_of(org).is_opted_out


def test_a_messaging_services_messages_belong_to_its_org(org, account):
    factories.make_sender(org, phone_number="", messaging_service_sid="MG" + "1" * 32)
    message = inbound(MEMBER, "STOP", 3, to="+18005550100")
    account.append(HistoryMessage(**{**message.__dict__, "messaging_service_sid": "MG" + "1" * 32}))

    run_import(org)

    assert state_of(org).is_opted_out


def test_days_out_of_range_are_refused(org, sender):
    for days in (0, 401, None):
        with pytest.raises(history.HistoryRefused):
            history.history_import_start(org=org, days=days)


def test_an_org_without_senders_is_refused(org):
    with pytest.raises(history.HistoryRefused, match="no sending number"):
        history.history_import_start(org=org, days=30)


# The command ----------------------------------------------------------------------------------


def test_the_command_imports_and_prints_the_report(org, sender, contact, account, capsys):
    account.extend([inbound(MEMBER, "STOP", 3), inbound(OTHER, UNCLEAR, 2)])

    call_command("import_twilio_history", "--org", org.slug, "--days", "30")

    out = capsys.readouterr().out
    assert "applied 2" in out
    assert "Opted out by a reply (STOP): 1" in out
    assert "I want to cancel my membership" in out
    assert state_of(org).is_opted_out

    call_command("import_twilio_history", "--org", org.slug, "--days", "30")
    assert "applied 0" in capsys.readouterr().out


def test_the_command_refuses_bad_arguments(org, sender):
    with pytest.raises(CommandError, match="no organization"):
        call_command("import_twilio_history", "--org", "nope", "--days", "30")
    with pytest.raises(CommandError, match="between 1 and 400"):
        call_command("import_twilio_history", "--org", org.slug, "--days", "0")


# The page --------------------------------------------------------------------------------------


def test_a_manager_starts_an_import_as_a_task_and_sees_its_report(
    owner_client, org, sender, contact, account, django_capture_on_commit_callbacks
):
    account.extend([inbound(MEMBER, "STOP", 3), inbound(OTHER, UNCLEAR, 2)])

    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("history:start"), {"days": "30"})

    record = HistoryImport.objects.get(organization=org)
    assert response.status_code == 302
    assert response["Location"] == reverse("history:import", args=[record.pk])
    assert record.state == HistoryImport.State.FINISHED  # the task ran (in the caller here)
    assert record.started_by.username == "owner"
    page = owner_client.get(response["Location"]).content.decode()
    assert "Opted out by a reply (STOP)" in page
    assert "I want to cancel my membership" in page
    assert "30 of 30 days read" in page
    assert state_of(org).is_opted_out


def test_the_task_goes_to_the_maintenance_queue():
    from config.celery import queue_of

    assert queue_of("conversations.tasks.import_twilio_history") == "maintenance"


def test_a_running_import_is_polled_and_an_interrupted_one_offers_resume(owner_client, org, sender):
    record = history.history_import_start(org=org, days=30, run_in_background=False)

    page = owner_client.get(reverse("history:page")).content.decode()
    assert 'hx-trigger="every 2s"' in page

    HistoryImport.objects.filter(pk=record.pk).update(
        state=HistoryImport.State.INTERRUPTED, error="ConnectionError: reset"
    )
    page = owner_client.get(reverse("history:page")).content.decode()
    assert "Resume the import" in page and "ConnectionError: reset" in page
    assert 'hx-trigger="every 2s"' not in page


def test_bad_days_get_a_message_not_an_error(owner_client, org, sender):
    response = owner_client.post(reverse("history:start"), {"days": "lots"}, follow=True)

    assert response.status_code == 200
    assert "Choose between 1 and 400 days" in response.content.decode()
    assert not HistoryImport.objects.exists()


def test_the_import_is_for_managers_only(teammate_client, org, sender):
    assert teammate_client.get(reverse("history:page")).status_code == 403
    response = teammate_client.post(reverse("history:start"), {"days": "30"})
    assert response.status_code == 403
    assert not HistoryImport.objects.exists()


def test_another_orgs_import_is_not_found(outsider_client, org, sender):
    record = history.history_import_start(org=org, days=30, run_in_background=False)

    url = reverse("history:import", args=[record.pk])
    assert outsider_client.get(url).status_code == 404
    page = outsider_client.get(reverse("history:page")).content.decode()
    assert 'id="history-progress"' not in page  # the outsider's org has no import


# The simulator's history ------------------------------------------------------------------------


def test_the_simulators_history_follows_the_number_plan(org, sender, settings):
    settings.SMS_BACKEND = "simulator"
    numbers = {nn: f"+1212555{100 + nn:04d}" for nn in (5, 62, 73, 91)}
    for phone in numbers.values():
        factories.make_contact(org, phone)
    other = factories.make_org("Other club")
    factories.make_sender(other, phone_number="+14155550888")
    factories.make_contact(other, "+12125550191")

    record = history.history_import_start(org=org, days=60, run_in_background=False)
    done = history.history_import_run(record.pk, backend=SimulatorBackend())

    assert NumberFacts.objects.get(phone=numbers[5]).last_heartbeat_at is not None
    assert state_of(org, numbers[62]).invalid_code == "30005"
    assert state_of(org, numbers[73]).error_streak == 1
    stopped = state_of(org, numbers[91])
    assert stopped.opt_out_reason == OptOutReason.STOP_KEYWORD  # the STOP came first
    assert done.report["opt_outs"] == 1 and done.report["already_opted_out"] == 1
    assert not state_of(other, "+12125550191").is_opted_out  # the other org's history

    again = history.history_import_start(org=org, days=60, run_in_background=False)
    assert history.history_import_run(again.pk, backend=SimulatorBackend()).messages_applied == 0


# Two workers at once (PostgreSQL) ----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_given_the_same_import_apply_each_message_once(settings):
    """A redelivered task (acks_late) runs beside the first: one holds the lease, the other
    leaves; a second import started meanwhile resumes the same one."""
    import threading

    from django.db import connection

    org = factories.make_org("Two workers")
    factories.make_sender(org, phone_number=OURS)
    factories.make_contact(org, MEMBER)
    account = get_backend("locmem").history_messages
    account.extend(a_busy_history())
    record = history.history_import_start(org=org, days=100, run_in_background=False)
    assert history.history_import_start(org=org, days=30, run_in_background=False).pk == record.pk
    barrier = threading.Barrier(2)
    results = []

    def worker():
        try:
            barrier.wait()
            results.append(history.history_import_run(record.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(r is None for r in results) == [False, True]
    record.refresh_from_db()
    assert record.state == HistoryImport.State.FINISHED
    assert record.messages_applied == len(account)
    assert HistorySeen.objects.filter(organization=org).count() == len(account)
    opt_outs = AuditEvent.objects.filter(organization=org, action=AuditEvent.Action.OPT_OUT)
    assert opt_outs.count() == 3  # the STOP, the "stop please", the carrier STOP: once each


def test_the_page_links_the_earlier_imports_reports(owner_client, org, sender, contact, account):
    account.append(inbound(MEMBER, "STOP", 3))
    first = run_import(org)
    run_import(org)

    page = owner_client.get(reverse("history:page")).content.decode()

    assert "Already imported before" in page  # the latest run
    assert reverse("history:import", args=[first.pk]) in page
    report = owner_client.get(reverse("history:import", args=[first.pk])).content.decode()
    assert "Opted out by a reply (STOP)" in report


def test_the_page_is_under_reports_in_the_navigation(owner_client, org, sender):
    page = owner_client.get(reverse("history:page")).content.decode()

    assert reverse("history:page").startswith("/reports/")
    assert 'aria-current="page" href="/reports/"' in page


def test_an_import_whose_worker_died_says_so_and_resumes(
    owner_client, org, sender, account, django_capture_on_commit_callbacks
):
    account.append(inbound(MEMBER, "STOP", 3))
    record = history.history_import_start(org=org, days=30, run_in_background=False)
    page = owner_client.get(reverse("history:page")).content.decode()
    assert "Waiting for a worker" in page

    # A worker took it and was killed: its lease lapsed with the import still running.
    HistoryImport.objects.filter(pk=record.pk).update(
        lease_until=timezone.now() - timedelta(minutes=1)
    )
    page = owner_client.get(reverse("history:page")).content.decode()
    assert "The worker running this import stopped" in page

    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(reverse("history:start"), {"days": "30"})  # Resume: the task runs
    record.refresh_from_db()
    assert record.state == HistoryImport.State.FINISHED
    assert state_of(org).is_opted_out


def test_after_the_import_the_first_broadcast_skips_what_the_history_showed(org, sender, settings):
    """A simulator population of 100 numbers (+1 212 555 0100–0199): before the import the
    first broadcast would text all of them; after it, the history's STOPs (0190–0194) and its
    30005s (0160–0169) are skipped, and the preview counts what that saves."""
    from conversations import broadcasts

    settings.SMS_BACKEND = "simulator"
    for nn in range(100):
        factories.make_contact(org, f"+1212555{100 + nn:04d}")
    before = broadcasts.preview(org=org, sender=sender, body="Pool closed", kind="all")
    assert (before.sendable, before.skipped, before.saving) == (100, {}, 0)

    record = history.history_import_start(org=org, days=60, run_in_background=False)
    history.history_import_run(record.pk, backend=SimulatorBackend())

    after = broadcasts.preview(org=org, sender=sender, body="Pool closed", kind="all")
    assert after.skipped == {"opted_out": 5, "marked_invalid": 10}
    assert after.sendable == 85
    # The ten disconnected numbers save money; the five who said STOP are not a saving.
    assert after.saving == 10 * (settings.SMS_PRICE_LONG_CODE + settings.SMS_CARRIER_FEE)
