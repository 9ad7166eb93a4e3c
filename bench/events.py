"""`events`: stored webhook events applied per second by two worker processes.

On a database of its own (`reachable_bench_ev`, created and migrated when missing): one org,
MESSAGES outbound messages to distinct numbers, each with a stored `sent` and a stored
`delivered` callback (received in that order, not yet applied), as a busy sender leaves them
behind. Two processes (each `conversations.events.events_apply_pending` in a loop, as two
Celery workers' processing tasks would run) apply them at once, nothing else running; the
figure is stored status events applied per second, wall clock, floor 1,000 ev/s. Then INBOUND
stored inbound messages from distinct numbers (a quarter of them STOP) are applied the same way
and reported beside it, without a floor: each is applied in its own transaction (the org sends
no confirmation text here: a child runs tasks inline, and the paced send is not this figure).

    uv run python -m bench.events prepare|apply ...   (the children; not for direct use)
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import BenchmarkError, Figure, child_env, own_database

MESSAGES = 10_000  # 20,000 status events
INBOUND = 2_000
WORKERS = 2
DATABASE = os.environ.get("BENCH_EVENTS_DATABASE", "reachable_bench_ev")
ORG_SLUG = "bench-events"
SENDER = "+16175552002"
ROOT = Path(__file__).resolve().parent.parent


def child(url, *args):
    command = [sys.executable, "-m", "bench.events", *args]
    done = subprocess.run(
        command, cwd=ROOT, env=child_env(url), capture_output=True, text=True, timeout=900
    )
    if done.returncode:
        raise BenchmarkError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def apply_in_workers(url, kind):
    """Start WORKERS appliers together; the wall-clock seconds until all are done."""
    command = [sys.executable, "-m", "bench.events", "apply"]
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            command, cwd=ROOT, env=child_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(WORKERS)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        if worker.returncode:
            raise BenchmarkError(f"applying {kind} failed:\n{err.decode()[-2000:]}")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    # Each child reports when it started applying (after its Django set-up): the clock runs
    # from the first start to the last finish.
    first = min(r["started"] for r in results)
    last = max(r["finished"] for r in results)
    return last - first, sum(r["applied"] for r in results), time.perf_counter() - started


def run():
    url = own_database(DATABASE)
    prepared = child(url, "prepare", "status")
    seconds, applied, _ = apply_in_workers(url, "status events")
    check = child(url, "check", "status")
    if check["unapplied"] or check["errors"] or check["not_delivered"]:
        raise BenchmarkError(f"status events were not all applied: {check}")
    rate = prepared["events"] / seconds
    child(url, "prepare", "inbound")
    inbound_seconds, _, _ = apply_in_workers(url, "inbound events")
    inbound_check = child(url, "check", "inbound")
    if inbound_check["unapplied"] or inbound_check["errors"] or inbound_check["stops_missing"]:
        raise BenchmarkError(f"inbound events were not all applied: {inbound_check}")
    return [
        Figure(
            "events",
            f"status events applied ({WORKERS} processes)",
            rate,
            "ev/s",
            ">= 1000",
            rate >= 1000,
        ),  # fmt: skip
        Figure("events", "status events: seconds for all", seconds, "s"),
        Figure(
            "events",
            f"inbound messages applied ({WORKERS} processes)",
            INBOUND / inbound_seconds,
            "ev/s",
        ),  # fmt: skip
    ]


# In the children, on the bench database ---------------------------------------------------------


def _phone(n):
    return f"+1917{n:07d}"


def prepare(kind):
    """Migrate; the org, its messages and their numbers' rows; then the events to apply."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from contacts.models import Organization
    from conversations.models import MessageEvent, Sender

    call_command("migrate", interactive=False, verbosity=0)
    org, _ = Organization.objects.get_or_create(slug=ORG_SLUG, defaults={"name": "Bench Events"})
    # No confirmation text: in these children a task runs inline, so its send (paced at the
    # sender's rate) would be timed here; sending is `sends`' to measure.
    Organization.objects.filter(pk=org.pk).update(opt_out_confirmation="")
    Sender.objects.get_or_create(organization=org, phone_number=SENDER)
    with connection.cursor() as cursor:
        # Every run starts from nothing: no events, messages, contacts or number rows.
        cursor.execute(f"TRUNCATE {MessageEvent._meta.db_table}")
        cursor.execute("DELETE FROM deliverability_auditevent WHERE organization_id = %s", [org.pk])
        for model in ("conversations_message", "conversations_conversation", "contacts_contact"):
            cursor.execute(f"DELETE FROM {model} WHERE organization_id = %s", [org.pk])
        cursor.execute(
            "DELETE FROM deliverability_numberstate WHERE organization_id = %s", [org.pk]
        )
        cursor.execute("DELETE FROM deliverability_numberfacts WHERE phone LIKE '+1917%%'")
    if kind == "status":
        events = _prepare_status(org, timezone.now())
    else:
        events = _prepare_inbound(timezone.now())
    MessageEvent.objects.bulk_create(events, batch_size=2000)
    cursor = connection.cursor()
    cursor.execute(f"ANALYZE {MessageEvent._meta.db_table}")
    cursor.execute("ANALYZE conversations_message")
    return {"events": len(events)}


def _prepare_status(org, now):
    from datetime import timedelta

    from contacts.models import Contact
    from conversations.models import Conversation, Message, MessageEvent, Sender
    from deliverability.models import NumberFacts, NumberState

    sender = Sender.objects.get(organization=org, phone_number=SENDER)
    contacts = Contact.objects.bulk_create(
        [
            Contact(
                organization=org,
                first_name="Bench",
                last_name=str(n),
                phone_raw=_phone(n),
                phone_e164=_phone(n),
            )  # fmt: skip
            for n in range(MESSAGES)
        ],
        batch_size=2000,
    )
    conversations = Conversation.objects.bulk_create(
        [Conversation(organization=org, contact=c) for c in contacts], batch_size=2000
    )
    sent_at = now - timedelta(minutes=5)
    messages = Message.objects.bulk_create(
        [
            Message(
                organization=org,
                conversation=conversation,
                sender=sender,
                direction=Message.Direction.OUTBOUND,
                to_number=_phone(n),
                from_number=SENDER,
                body="Bench reminder",
                status=Message.Status.QUEUED,
                sent_at=sent_at,
                provider_sid=f"SMbenchev{n:025d}",
                dispatch=Message.Dispatch.SUBMITTED,
            )  # fmt: skip
            for n, conversation in enumerate(conversations)
        ],
        batch_size=2000,
    )
    # As the send path leaves them: the numbers' rows exist since the attempt.
    NumberState.objects.bulk_create(
        [
            NumberState(organization=org, phone=_phone(n), last_attempt_at=sent_at)
            for n in range(MESSAGES)
        ],  # fmt: skip
        batch_size=2000,
    )
    NumberFacts.objects.bulk_create(
        [NumberFacts(phone=_phone(n), last_attempt_at=sent_at) for n in range(MESSAGES)],
        batch_size=2000,
    )
    events = []
    for status, offset in (("sent", 0), ("delivered", MESSAGES)):
        for n, message in enumerate(messages):
            payload = {
                "AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01",
                "MessageSid": message.provider_sid, "SmsSid": message.provider_sid,
                "MessageStatus": status, "SmsStatus": status, "To": message.to_number,
                "From": SENDER, "_query": {"m": str(message.pk)},
            }  # fmt: skip
            events.append(
                MessageEvent(
                    kind=MessageEvent.Kind.STATUS,
                    idempotency_key=f"status:{message.provider_sid}:{status}:",
                    provider_sid=message.provider_sid,
                    status=status,
                    payload=payload,
                    received_at=now + timedelta(microseconds=offset + n),
                )
            )
    return events


def _prepare_inbound(now):
    from datetime import timedelta

    from conversations.models import MessageEvent

    events = []
    for n in range(INBOUND):
        sid = f"SMbenchin{n:025d}"
        body = "STOP" if n % 4 == 0 else "Thanks, see you Tuesday!"
        payload = {
            "AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01", "MessageSid": sid,
            "SmsSid": sid, "SmsMessageSid": sid, "Body": body, "From": _phone(n),
            "To": SENDER, "NumSegments": "1", "NumMedia": "0", "SmsStatus": "received",
        }  # fmt: skip
        events.append(
            MessageEvent(
                kind=MessageEvent.Kind.INBOUND,
                idempotency_key=f"inbound:{sid}",
                provider_sid=sid,
                status="received",
                payload=payload,
                received_at=now + timedelta(microseconds=n),
            )
        )
    return events


def apply():
    """One worker process: apply until nothing is left; when it started and finished."""
    import django

    django.setup()
    from django.db import connection

    from conversations import events

    connection.ensure_connection()
    started, applied = time.time(), 0
    while True:
        done = events.events_apply_pending(limit=5000)
        applied += done
        if not done:
            break
    return {"applied": applied, "started": started, "finished": time.time()}


def check(kind):
    import django

    django.setup()
    from conversations.models import Message, MessageEvent
    from deliverability.models import NumberState

    stored = MessageEvent.objects.filter(kind=kind)
    result = {
        "unapplied": stored.filter(processed_at=None).count(),
        "errors": stored.filter(not_applied=True).count(),
    }
    if kind == "status":
        result["not_delivered"] = (
            Message.objects.filter(organization__slug=ORG_SLUG, direction="outbound")
            .exclude(status="delivered")
            .count()
        )
    else:
        result["stops_missing"] = (
            INBOUND // 4
            - NumberState.objects.filter(organization__slug=ORG_SLUG)
            .exclude(opt_out_reason="")
            .count()
        )
    return result


if __name__ == "__main__":
    command, args = sys.argv[1:2], sys.argv[2:]
    if command == ["prepare"]:
        print(json.dumps(prepare(*args)))
    elif command == ["apply"]:
        print(json.dumps(apply()))
    elif command == ["check"]:
        print(json.dumps(check(*args)))
    else:
        sys.exit(__doc__)
