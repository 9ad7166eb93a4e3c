"""Writing webhook events to PostgreSQL with group commit (behind event_store.event_save_once).

Every callback must be stored before Twilio gets its 2xx, so each request waits for a commit
that holds its row. Concurrent requests of a process share that wait: the first to arrive
writes every row waiting at that moment in one INSERT and one commit, and the others return
when the commit that holds their row is done. Nothing is answered before it is stored; under
load there are fewer statements and fewer WAL flushes than rows.

One statement per batch size, prepared by psycopg on each connection once it has run five
times; duplicates, within a batch or with rows stored earlier, are skipped by ON CONFLICT and
reported as such.
"""

import functools
import json
import threading
from dataclasses import dataclass, field

import psycopg
from django.db import connection
from django.utils import timezone

from conversations.models import MessageEvent

_ROW = "(%s, %s, %s, %s, %s, %s::jsonb, %s, '')"


def takes(event):
    """Whether `event` fits a row of this writer: a webhook's, as it came (linked to nothing,
    not processed); the columns it leaves out take their defaults in the database."""
    return (
        event.message_id is None
        and event.organization_id is None
        and event.processed_at is None
        and not event.outcome
        and not event.attempts
        and event.next_attempt_at is None
        and not event.not_applied
    )


def row(event):
    """The values of `event` in insert_statement's column order."""
    return (
        event.kind,
        event.idempotency_key,
        event.provider_sid,
        event.status,
        event.error_code,
        json.dumps(event.payload),
        timezone.now(),
    )


@functools.cache
def insert_statement(rows):
    """INSERT of `rows` rows (one statement per batch size, each prepared by psycopg)."""
    return (
        f"INSERT INTO {MessageEvent._meta.db_table} (kind, idempotency_key, provider_sid, "
        "status, error_code, payload, received_at, outcome) VALUES "
        + ", ".join([_ROW] * rows)
        + " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key"
    )


@dataclass(eq=False)
class _Row:
    values: tuple  # kind, idempotency_key, provider_sid, status, error_code, payload, received_at
    done: bool = False
    stored: bool = False
    error: BaseException | None = None
    waiters: list = field(default_factory=list)


class GroupCommitWriter:
    """Rows of this process's threads, written by whichever of them gets there first."""

    def __init__(self):
        self._lock = threading.Condition()
        self._queue = []
        self._writing = False

    def store(self, values):
        """Store one event's row; True if stored, False for a duplicate. Raises Django's
        database errors (the caller answers 503 and Twilio retries)."""
        row = _Row(tuple(values))
        with self._lock:
            self._queue.append(row)
            while self._writing and not row.done:
                self._lock.wait()
            if row.done:
                return self._outcome(row)
            self._writing = True
            batch, self._queue = self._queue, []
        try:
            inserted = _write(batch)
        except BaseException as error:
            inserted = error
        with self._lock:
            for each in batch:
                each.done = True
                if isinstance(inserted, BaseException):
                    each.error = inserted
            if not isinstance(inserted, BaseException):
                _mark_stored(batch, inserted)
            self._writing = False
            self._lock.notify_all()
        return self._outcome(row)

    @staticmethod
    def _outcome(row):
        if row.error is not None:
            raise row.error
        return row.stored


def _mark_stored(batch, inserted_keys):
    """The first row of each inserted key was stored; a later one with that key is a duplicate."""
    remaining = set(inserted_keys)
    for row in batch:
        key = row.values[1]
        if key in remaining:
            row.stored = True
            remaining.discard(key)


def _write(batch):
    params = [value for row in batch for value in row.values]
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(insert_statement(len(batch)), params)
        return [key for (key,) in cursor.fetchall()]


writer = GroupCommitWriter()
