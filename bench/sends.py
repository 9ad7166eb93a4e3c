"""`sends`: a broadcast through real Celery workers to a local Twilio stand-in, at 100 msg/s.

A database of its own (`reachable_bench_sends`, created and migrated when missing) holds an org
with a short code (100 msg/s) and COUNT contacts. The Twilio stand-in (tests.fake_twilio) takes
each create call in LATENCY seconds and sends no status callbacks. Celery workers as the README
recommends run on a Redis database of their own: `bulk` on threads (two workers of 16),
`maintenance` for the dispatcher, and beat. The broadcast is started, and every create call's
arrival is recorded.

Figures: the share of the sender's rate achieved over the steady state (from 5 s after the
first call to the last), the busiest sliding 1-second window of calls as they reached the
stand-in's socket (never above the rate), and the bulk workers' CPU seconds per 1,000 messages.

    uv run python -m bench.sends prepare|start ...   (the children; not for direct use)
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    BenchmarkError,
    Figure,
    bulk_workers,
    child_env,
    own_database,
    served_env,
)

COUNT = int(os.environ.get("BENCH_SENDS_COUNT", "10000"))
RATE = 100
LATENCY = float(os.environ.get("BENCH_SENDS_LATENCY", "0.150"))
DATABASE = os.environ.get("BENCH_SENDS_DATABASE", "reachable_bench_sends")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
ORG_SLUG = "bench-sends"
WARM_UP = 5.0  # seconds after the first call before the steady state is measured
ROOT = Path(__file__).resolve().parent.parent


def child(url, *args, **env):
    command = [sys.executable, "-m", "bench.sends", *args]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**child_env(url), **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode:
        raise BenchmarkError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def celery(env, *args):
    command = [sys.executable, "-m", "celery", "-A", "config", *args]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def cpu_seconds(pid):
    """User + system CPU of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worst_window(times, width=1.0):
    worst, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= width:
            start += 1
        worst = max(worst, end - start + 1)
    return worst


def run():
    import redis

    from tests.fake_twilio import FakeTwilio

    url = own_database(DATABASE)
    try:
        broker = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        broker.flushdb()
    except redis.RedisError as exc:
        raise BenchmarkError(f"sends needs Redis at {REDIS_URL}: {exc}") from exc
    prepared = child(url, "prepare", str(COUNT))
    twilio = FakeTwilio(latency=LATENCY).start()
    env = served_env(url, redis_url=REDIS_URL, twilio=twilio)
    bulks = [celery(env, "worker", *arguments) for arguments in bulk_workers()]
    others = [
        celery(env, "worker", "-Q", "maintenance", "-c", "1", "-n", "maintenance@%h"),
        celery(env, "beat", "-s", str(Path("/tmp") / f"bench-sends-beat-{os.getpid()}")),
    ]
    try:
        time.sleep(8)  # the workers boot
        cpu_before = sum(cpu_seconds(bulk.pid) for bulk in bulks)
        child(url, "start", str(prepared["sender"]), REDIS_URL=REDIS_URL)
        deadline = time.monotonic() + COUNT / RATE * 2 + 60
        while len(twilio.attempts) < COUNT and time.monotonic() < deadline:
            time.sleep(1)
        cpu = sum(cpu_seconds(bulk.pid) for bulk in bulks) - cpu_before
    finally:
        for process in [*bulks, *others]:
            process.terminate()
        for process in [*bulks, *others]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        twilio.stop()
        broker.flushdb()
    times = sorted(attempt.at for attempt in twilio.attempts)
    if len(times) < 2:
        raise BenchmarkError("no message reached the Twilio stand-in")
    steady = [at for at in times if at >= times[0] + WARM_UP]
    achieved = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    share = achieved / RATE
    worst = worst_window(times)
    per_thousand = cpu / len(times) * 1000
    return [
        Figure(
            "sends", f"messages sent of {COUNT}", len(times), "", f"{COUNT}", len(times) == COUNT
        ),
        Figure(
            "sends", f"achieved share of {RATE} msg/s", share * 100, "%", ">= 95 %", share >= 0.95
        ),
        Figure("sends", "busiest 1 s window", worst, "msg", f"<= {RATE}", worst <= RATE),
        Figure("sends", "bulk worker CPU per 1,000 messages", per_thousand, "s"),
    ]


# In the children ---------------------------------------------------------------------------------


def prepare(count):
    from django.core.management import call_command

    from contacts.models import Contact, Organization
    from conversations.models import Broadcast, Message, Sender

    call_command("migrate", "--noinput", verbosity=0)
    org, _ = Organization.objects.get_or_create(slug=ORG_SLUG, defaults={"name": "Bench Sends"})
    org.quiet_hours_start = org.quiet_hours_start.replace(hour=0, minute=0)
    org.quiet_hours_end = org.quiet_hours_end.replace(hour=23, minute=59, second=59)
    org.save()
    Message.objects.filter(organization=org).delete()
    Broadcast.objects.filter(organization=org).delete()
    sender, _ = Sender.objects.update_or_create(
        organization=org,
        phone_number="+14155550199",
        defaults={"kind": Sender.Kind.SHORT_CODE, "throughput": RATE, "is_active": True},
    )
    members = Contact.objects.filter(organization=org)
    # A smaller run after a larger one: the broadcast goes to COUNT members, not the last run's.
    beyond = list(members.order_by("pk").values_list("pk", flat=True)[count:])
    Contact.objects.filter(pk__in=beyond).delete()
    have = members.count()
    new = []
    for n in range(have, count):
        contact = Contact(organization=org, first_name="Member", last_name=str(n))
        contact.set_phone(f"+1212{4000000 + n:07d}")
        new.append(contact)
    Contact.objects.bulk_create(new, batch_size=2000)
    return {"sender": sender.pk}


def start(sender_id):
    from django.db import transaction

    from conversations import broadcasts
    from conversations.models import Broadcast, Sender

    sender = Sender.objects.select_related("organization").get(pk=sender_id)
    with transaction.atomic():
        broadcast = broadcasts.broadcast_start(
            org=sender.organization,
            sender=sender,
            body="The pool is closed tomorrow for maintenance.",
            kind=Broadcast.Audience.ALL,
            by=None,
        )
    return {"broadcast": broadcast.pk, "recipients": broadcast.recipient_count}


if __name__ == "__main__":
    import django

    django.setup()
    action, *rest = sys.argv[1:]
    if action == "prepare":
        print(json.dumps(prepare(int(rest[0]))))
    elif action == "start":
        print(json.dumps(start(int(rest[0]))))
