"""Work on queues by urgency (SPEC §5): what goes where, an interactive send never waits behind
bulk work in the in-process mode, and an import's lookups go out per batch at LOOKUP_RATE."""

import threading
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

import config.celery
from config import inprocess, pacing
from contacts import importer
from contacts.models import ContactImport
from conversations import broadcasts, sending
from conversations.models import Broadcast
from deliverability import tasks as lookup_tasks
from deliverability.models import NumberFacts
from tests.factories import make_contact


class RecordingScheduler:
    def __init__(self):
        self.queues = []

    def submit(self, queue, job):
        self.queues.append(queue)

    def discard_waiting(self):
        pass  # it runs nothing


@pytest.fixture
def scheduled(settings, monkeypatch):
    """Tasks are scheduled in-process as without a broker, but recorded, not run."""
    settings.TASKS_IN_PROCESS = "thread"
    recorder = RecordingScheduler()
    monkeypatch.setattr(inprocess, "_scheduler", recorder)
    return recorder.queues


def test_a_staff_send_is_interactive_and_a_broadcast_is_bulk(
    org, owner, sender, contact, scheduled, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        sending.message_create_outbound(org=org, contact=contact, body="See you at 6", by=owner)
    assert scheduled == ["interactive"]

    scheduled.clear()
    with django_capture_on_commit_callbacks(execute=True):
        broadcast = broadcasts.broadcast_start(
            org=org, sender=sender, body="Pool closed", kind=Broadcast.Audience.ALL, by=owner
        )
    assert scheduled == ["maintenance"]  # the dispatcher
    scheduled.clear()
    org.quiet_hours_start, org.quiet_hours_end = (
        org.quiet_hours_start.replace(hour=0, minute=0),
        org.quiet_hours_end.replace(hour=23, minute=59, second=59),
    )
    org.save()
    broadcasts.broadcast_dispatch(broadcast.pk)
    assert scheduled == ["bulk"]


def test_in_process_an_interactive_send_and_an_event_never_wait_behind_bulk_work():
    scheduler = inprocess.Scheduler()
    release = threading.Event()
    ran = []
    try:
        for _ in range(50):  # far more bulk sends and lookups than threads, all stuck
            scheduler.submit("bulk", lambda queue: release.wait(5))
            scheduler.submit("lookups", lambda queue: release.wait(5))
            scheduler.submit("maintenance", lambda queue: release.wait(5))
        done = threading.Event()
        scheduler.submit("events", lambda queue: ran.append(queue))
        scheduler.submit("interactive", lambda queue: (ran.append(queue), done.set()))
        assert done.wait(2)
        assert sorted(ran) == ["events", "interactive"]
    finally:
        release.set()


def test_an_import_looks_numbers_up_per_batch_and_shows_their_progress(
    owner_client, org, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    real_enqueue = config.celery.enqueue

    def recording_enqueue(task_name, *args, **kwargs):
        enqueued.append(task_name)
        return real_enqueue(task_name, *args, **kwargs)

    monkeypatch.setattr(config.celery, "enqueue", recording_enqueue)
    # Batches of 150 rather than 500: a file just over the inline limit still makes three.
    monkeypatch.setattr(importer, "BATCH", 150)
    lines = ["member_id,first_name,last_name,phone"]
    lines += [f"B{n},Member,No{n},212-400-{n:04d}" for n in range(importer.INLINE_ROWS + 100)]
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(
            "/contacts/import/",
            {"file": SimpleUploadedFile("m.csv", ("\n".join(lines) + "\n").encode(), "text/csv")},
        )
    job = ContactImport.objects.get()
    assert job.state == "done"
    # Three batches of rows, one lookup task each: never one task per number.
    assert enqueued.count("deliverability.tasks.lookup_numbers") == 3
    assert "deliverability.tasks.lookup_number" not in enqueued
    assert NumberFacts.objects.exclude(looked_up_at=None).count() == 400
    page = owner_client.get(f"/contacts/import/{job.pk}/").content.decode()
    assert "Line types checked: 400 of 400" in page


def test_an_import_page_counts_lookups_still_to_come(owner_client, org):
    make_contact(org, "+12125550111")
    job = ContactImport.objects.create(
        organization=org, filename="m.csv", state="done", total_rows=32776
    )
    ContactImport.objects.filter(pk=job.pk).update(lookups_total=32776, lookups_done=12400)
    page = owner_client.get(
        f"/contacts/import/{job.pk}/",
        headers={"HX-Request": "true", "HX-Target": "import-lookups"},
    ).content.decode()
    assert "Line types checked: 12,400 of 32,776…" in page
    assert 'hx-trigger="every 3s"' in page


def test_lookups_keep_to_lookup_rate(settings, monkeypatch):
    settings.LOOKUP_RATE = 20
    slots = []

    def take(key, rate):
        slots.append(pacing.take_slot(key, rate)[1])

    monkeypatch.setattr(lookup_tasks, "wait_for_slot", take)
    monkeypatch.setattr(lookup_tasks, "lookup_line_type", lambda phone: None)
    for n in range(41):
        lookup_tasks.paced_lookup(f"+1212400{n:04d}")
    # 41 calls at 20 a second span two seconds, never closer than 1/20 s apart.
    assert slots[-1] - slots[0] >= 2.0
    assert min(b - a for a, b in zip(slots, slots[1:], strict=False)) >= 0.05
    assert time.time() < slots[-1]  # the limiter made them wait (sleep is the caller's)


def test_an_interactive_send_takes_the_senders_next_slot_ahead_of_a_broadcast():
    # A long code (1 msg/s) and 32 bulk threads that each want a slot for their send.
    booked = [pacing.take_slot("sender-long", 1, horizon=0.5) for _ in range(32)]
    assert sum(1 for wait, _ in booked if wait is not None) == 1  # the rest wait to ask again
    wait, _ = pacing.take_slot("sender-long", 1)  # a staff member's reply
    assert wait <= 1.5  # not 32 s behind the broadcast


class _Marker:
    """A task that only records that it ran."""

    name = "marker"

    def __init__(self):
        self.ran = threading.Event()

    def apply(self, args, kwargs, throw, retries):
        self.ran.set()


def test_a_task_waiting_out_its_countdown_is_discarded_with_the_test(settings):
    """A retry one test scheduled must never run during the next one."""
    settings.TASKS_IN_PROCESS = "thread"
    later, now = _Marker(), _Marker()
    inprocess.submit(later, (), {}, countdown=0.2)
    inprocess.discard_pending()
    inprocess.submit(now, (), {})
    assert now.ran.wait(5)
    time.sleep(0.4)
    assert not later.ran.is_set()
