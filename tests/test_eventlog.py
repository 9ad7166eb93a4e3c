"""Group commit of webhook events (conversations.eventlog): concurrent requests of a process
share INSERTs and commits, and each is answered only once the commit holding its row is done."""

import threading
import time
import uuid

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from conversations import eventlog
from conversations.models import MessageEvent


def row(key):
    return (
        "status",
        key,
        "SM" + "0" * 32,
        "sent",
        None,
        '{"MessageStatus": "sent"}',
        timezone.now(),
    )


def store_concurrently(writer, keys):
    """Store each key from its own thread; {key: result or exception}."""
    results, start = {}, threading.Barrier(len(keys))

    def store(index, key):
        start.wait()
        try:
            results[index] = writer.store(row(key))
        except Exception as error:  # noqa: BLE001 - the test looks at what each thread got
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=store, args=(i, key)) for i, key in enumerate(keys)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return [results[i] for i in range(len(keys))]


@pytest.fixture
def slow_writes(monkeypatch):
    """_write records its batches and takes 50 ms, as a commit under load would."""
    batches, stored = [], {"dup-of-earlier"}  # a key stored by an earlier request

    def write(batch):
        batches.append([r.values[1] for r in batch])
        time.sleep(0.05)
        inserted = []
        for r in batch:  # what ON CONFLICT DO NOTHING … RETURNING gives
            if r.values[1] not in stored:
                stored.add(r.values[1])
                inserted.append(r.values[1])
        return inserted

    monkeypatch.setattr(eventlog, "_write", write)
    return batches


def test_concurrent_rows_share_writes_and_each_gets_its_own_answer(slow_writes):
    keys = [f"k{n}" for n in range(12)] + ["k3", "dup-of-earlier"]
    results = store_concurrently(eventlog.GroupCommitWriter(), keys)
    # k3 came twice: whichever was written first is stored, the other is a duplicate.
    assert sorted([results[3], results[12]]) == [False, True]
    assert results[:3] + results[4:12] == [True] * 11
    assert results[13] is False  # stored by an earlier request
    written = [key for batch in slow_writes for key in batch]
    assert sorted(written) == sorted(keys)  # every row written exactly once
    assert len(slow_writes) < len(keys)  # and in fewer writes than rows


def test_a_failed_write_fails_every_row_of_its_batch_and_the_next_batch_goes_on(monkeypatch):
    calls = []

    def write(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            time.sleep(0.05)  # the others queue up meanwhile
            raise OperationalError("the database system is shutting down")
        return [r.values[1] for r in batch]

    monkeypatch.setattr(eventlog, "_write", write)
    results = store_concurrently(eventlog.GroupCommitWriter(), [f"k{n}" for n in range(6)])
    failed = [r for r in results if isinstance(r, OperationalError)]
    assert len(failed) == calls[0]  # the first batch failed, for each of its rows
    assert results.count(True) == 6 - calls[0]  # later batches were written


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_rows_from_many_threads_are_stored_once_each_on_postgresql():
    run = uuid.uuid4().hex[:8]
    keys = [f"status:{run}-{n}" for n in range(16)] + [f"status:{run}-0"]
    results = store_concurrently(eventlog.writer, keys)
    assert results.count(True) == 16 and results.count(False) == 1
    stored = MessageEvent.objects.filter(idempotency_key__startswith=f"status:{run}-")
    assert stored.count() == 16
    assert all(p == {"MessageStatus": "sent"} for p in stored.values_list("payload", flat=True))
