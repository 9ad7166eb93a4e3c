"""`latency`: a staff reply and a STOP while an import's lookups and a broadcast run (SPEC §5).

Two runs, one per way the product runs its tasks:

- *Celery*: the README's worker layout (`interactive,events` on 8 threads, `bulk` on 2 × 16,
  `lookups` on 2, `maintenance`, beat) on a Redis database of its own, gunicorn serving the
  webhooks, a Twilio stand-in (tests.fake_twilio) that answers each create and lookup in
  150 ms and posts a signed `sent` then `delivered` callback for each message. A 100,000-row
  import is started in one organization; once its lookups run, a 10,000-recipient broadcast
  starts in another, on a 100 msg/s short code.
- *In-process*: no Redis; one process runs the tasks on its priority scheduler and serves the
  webhooks (a threaded WSGI server), as the demo does; a 10,000-row import.

While both run, every PROBE_EVERY seconds a staff member sends a one-to-one message from the
broadcast's own sender, and a member replies STOP through the signed inbound webhook. Figures:
the time from the staff send to the stand-in receiving it (p95 ≤ 3 s), from the STOP's POST to
its event being applied (p95 ≤ 5 s), what the broadcast and the lookups got done meanwhile.

Smaller runs: BENCH_LATENCY_SCALE (e.g. 0.1) scales the import, the audience and the probing
time; BENCH_LATENCY_MODES=celery or inprocess runs one of the two.

    uv run python -m bench.latency prepare|load|probe|inprocess ...   (the children)
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlencode

from bench.common import (
    BenchmarkError,
    Figure,
    bulk_workers,
    child_env,
    own_database,
    percentile,
    served_env,
)

SCALE = float(os.environ.get("BENCH_LATENCY_SCALE", "1"))
RECIPIENTS = max(100, int(10_000 * SCALE))
IMPORT_ROWS = {"celery": max(500, int(100_000 * SCALE)), "inprocess": max(500, int(10_000 * SCALE))}
PROBE_SECONDS = max(20.0, 90.0 * SCALE)
PROBE_EVERY = 2.0
RATE = 100
LATENCY = 0.150
CALLBACKS = [("sent", 1.0), ("delivered", 4.0)]
MODES = os.environ.get("BENCH_LATENCY_MODES", "celery,inprocess").split(",")
DATABASE = os.environ.get("BENCH_LATENCY_DATABASE", "reachable_bench_latency")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent
STAFF_BODY = "Staff reply {n}: see you at the front desk."
SEND_FLOOR, STOP_FLOOR = 3.0, 5.0
NICE = int(os.environ.get("BENCH_LATENCY_NICE", "10"))  # the Procfile's background queues


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child(url, *args, timeout=1800, **env):
    command = [sys.executable, "-m", "bench.latency", *map(str, args)]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**child_env(url), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode:
        raise BenchmarkError(f"{' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


LOGS = Path(os.environ.get("BENCH_LATENCY_LOGS", "/tmp")) / f"bench-latency-{os.getpid()}"


def start(env, *command, nice=0):
    """A server or worker (at a lower CPU priority by `nice`, as the Procfile runs the
    background queues); its output goes to a file under LOGS (named in an error)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    name = "-".join(part.split("@")[0] for part in command if part.isidentifier() or "@" in part)
    with open(LOGS / f"{name[:60]}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )


def stop(processes):
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for_web(port, processes):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    stop(processes)
    raise BenchmarkError(f"the web server did not answer /healthz within 120 s (logs: {LOGS})")


def run_celery(url, prepared):
    import redis

    from tests.fake_twilio import FakeTwilio

    try:
        broker = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        broker.flushdb()
    except redis.RedisError as exc:
        raise BenchmarkError(f"latency needs Redis at {REDIS_URL}: {exc}") from exc
    twilio = FakeTwilio(latency=LATENCY, callbacks=CALLBACKS).start()
    port = free_port()
    env = served_env(url, redis_url=REDIS_URL, port=port, twilio=twilio)
    beat_file = Path("/tmp") / f"bench-latency-beat-{os.getpid()}"
    worker = ["celery", "-A", "config", "worker", "-l", "warning"]
    processes = [
        start(
            env,
            "gunicorn",
            "config.wsgi",
            "-c",
            "config/gunicorn.py",
            "--workers",
            "3",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ),
        start(
            env, *worker, "-Q", "interactive,events", "-P", "threads", "-c", "8", "-n", "urgent@%h"
        ),
        *[start(env, *worker, *arguments, nice=NICE) for arguments in bulk_workers()],
        start(
            env, *worker, "-Q", "lookups", "-P", "threads", "-c", "2", "-n", "lookups@%h", nice=NICE
        ),
        start(env, *worker, "-Q", "maintenance", "-c", "2", "-n", "maintenance@%h", nice=NICE),
        start(env, "celery", "-A", "config", "beat", "-l", "warning", "-s", str(beat_file)),
    ]
    try:
        wait_for_web(port, processes)
        time.sleep(5)  # the workers boot
        load = child(url, "load", IMPORT_ROWS["celery"], REDIS_URL=REDIS_URL)
        probed = child(
            url,
            "probe",
            PROBE_SECONDS,
            port,
            REDIS_URL=REDIS_URL,
            TWILIO_AUTH_TOKEN=env["TWILIO_AUTH_TOKEN"],
            PUBLIC_BASE_URL=env["PUBLIC_BASE_URL"],
        )
    finally:
        twilio.stop()  # first: callbacks due after the run are not posted to a stopped server
        stop(processes)
        broker.flushdb()
    return figures("celery", load, probed, twilio)


def run_inprocess(url, prepared):
    from tests.fake_twilio import FakeTwilio

    twilio = FakeTwilio(latency=LATENCY, callbacks=CALLBACKS).start()
    port = free_port()
    env = served_env(url, redis_url="", port=port, twilio=twilio)
    try:
        probed = child(
            url,
            "inprocess",
            IMPORT_ROWS["inprocess"],
            PROBE_SECONDS,
            port,
            **{
                key: env[key]
                for key in (
                    "SMS_BACKEND",
                    "TWILIO_BASE_URL",
                    "TWILIO_ACCOUNT_SID",
                    "TWILIO_AUTH_TOKEN",
                    "PUBLIC_BASE_URL",
                    "DEBUG",
                    "SECRET_KEY",
                    "ALLOWED_HOSTS",
                    "SECURE_SSL_REDIRECT",
                )
            },
            TASKS_IN_PROCESS="thread",
        )
    finally:
        twilio.stop()
    return figures("inprocess", probed["load"], probed, twilio)


def figures(mode, load, probed, twilio):
    """The figures of one run: staff sends from the stand-in's own record of arrivals."""
    arrivals = {}
    for attempt in twilio.attempts:
        if attempt.body.startswith("Staff reply"):
            arrivals.setdefault((attempt.to, attempt.body), attempt.wall)
    send_times = [
        arrivals[(to, body)] - created
        for to, body, created in probed["sends"]
        if (to, body) in arrivals
    ]
    lost_sends = len(probed["sends"]) - len(send_times)
    stops = probed["stops"]
    label = "Celery" if mode == "celery" else "in-process"
    send_p95, stop_p95 = percentile(send_times, 0.95), percentile(stops, 0.95)
    print(f"{label}, staff sends in order (s):", " ".join(f"{t:.2f}" for t in send_times))
    print(f"{label}, STOPs in order (s):", " ".join(f"{t:.2f}" for t in stops), flush=True)
    broadcast_sent = sum(
        1 for a in twilio.attempts if a.body == BROADCAST_BODY and a.wall >= probed["started"]
    )
    return [
        Figure(
            "latency",
            f"{label}: staff send p95 to the stand-in",
            send_p95,
            "s",
            f"<= {SEND_FLOOR:g} s",
            send_p95 <= SEND_FLOOR and not lost_sends,
        ),
        Figure("latency", f"{label}: staff send p50 / max", percentile(send_times, 0.5), "s"),
        Figure("latency", f"{label}: staff send max", max(send_times or [0.0]), "s"),
        Figure(
            "latency",
            f"{label}: staff sends probed / not arrived",
            len(probed["sends"]),
            "",
            f"{lost_sends} not arrived",
            not lost_sends,
        ),
        Figure(
            "latency",
            f"{label}: STOP applied p95",
            stop_p95,
            "s",
            f"<= {STOP_FLOOR:g} s",
            stop_p95 <= STOP_FLOOR and not probed["stops_missing"],
        ),
        Figure("latency", f"{label}: STOP applied p50", percentile(stops, 0.5), "s"),
        Figure(
            "latency",
            f"{label}: STOPs probed / not applied",
            len(stops) + probed["stops_missing"],
            "",
            f"{probed['stops_missing']} not applied",
            not probed["stops_missing"],
        ),
        Figure(
            "latency",
            f"{label}: broadcast msg/s while probed",
            broadcast_sent / probed["seconds"],
            "msg/s",
        ),
        Figure(
            "latency",
            f"{label}: lookups done while probed",
            probed["lookups_done"] - load["lookups_done"],
            "",
        ),
        Figure("latency", f"{label}: import rows / lookups queued", load["rows"], ""),
        Figure(
            "latency",
            f"{label}: status callbacks posted (failed)",
            twilio.callbacks_posted,
            "",
            f"{twilio.callbacks_failed} failed",
        ),
        Figure("latency", f"{label}: load average (1 min) at the end", os.getloadavg()[0], ""),
    ]


def run():
    url = own_database(DATABASE)
    prepared = child(url, "prepare", RECIPIENTS)
    results = []
    if "celery" in MODES:
        results += run_celery(url, prepared)
        child(url, "prepare", RECIPIENTS)
    if "inprocess" in MODES:
        results += run_inprocess(url, prepared)
    return results


# In the children ---------------------------------------------------------------------------------

ORG_SLUG, IMPORT_SLUG = "bench-latency", "bench-latency-import"
BROADCAST_BODY = "The pool is closed tomorrow for maintenance."
SHORT_CODE = "+14155550177"


def prepare(recipients):
    """The broadcast's org (a short code, `recipients` members, staff contacts to write to),
    an empty org for the import; what a previous run left is removed."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from contacts.models import Contact, ContactImport, Membership, Organization
    from conversations.models import Broadcast, Conversation, Message, MessageEvent, Sender
    from deliverability.models import NumberFacts, NumberState

    call_command("migrate", "--noinput", verbosity=0)
    org, _ = Organization.objects.get_or_create(slug=ORG_SLUG, defaults={"name": "Bench Latency"})
    org.quiet_hours_start = org.quiet_hours_start.replace(hour=0, minute=0)
    org.quiet_hours_end = org.quiet_hours_end.replace(hour=23, minute=59, second=59)
    org.save()
    other, _ = Organization.objects.get_or_create(
        slug=IMPORT_SLUG, defaults={"name": "Bench Latency Import"}
    )
    user, _ = get_user_model().objects.get_or_create(username="bench-latency")
    for each in (org, other):
        Membership.objects.get_or_create(
            organization=each, user=user, defaults={"role": Membership.Role.MANAGER}
        )
    MessageEvent.objects.all().delete()
    Message.objects.all().delete()
    Broadcast.objects.all().delete()
    Conversation.objects.filter(organization=other).delete()
    ContactImport.objects.all().delete()
    Contact.objects.filter(organization=other).delete()
    NumberState.objects.all().delete()
    NumberFacts.objects.all().delete()
    sender, _ = Sender.objects.update_or_create(
        organization=org,
        phone_number=SHORT_CODE,
        defaults={"kind": Sender.Kind.SHORT_CODE, "throughput": RATE, "is_active": True},
    )
    have = Contact.objects.filter(organization=org).count()
    new = []
    for n in range(have, recipients):
        contact = Contact(organization=org, first_name="Member", last_name=str(n))
        contact.set_phone(f"+1212{5000000 + n:07d}")
        new.append(contact)
    Contact.objects.bulk_create(new, batch_size=2000)
    return {"org": org.pk, "sender": sender.pk}


def load(rows):
    """Start the import (its lookups run on the `lookups` queue) and wait until they run."""
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import transaction

    from config.celery import enqueue_on_commit
    from contacts import importer
    from contacts.models import Organization

    other = Organization.objects.get(slug=IMPORT_SLUG)
    user = get_user_model().objects.get(username="bench-latency")
    lines = ["first_name,last_name,phone"]
    lines += [f"Imported,{n},+1646{3000000 + n:07d}" for n in range(rows)]
    upload = importer.read_upload(SimpleUploadedFile("members.csv", "\n".join(lines).encode()))
    with transaction.atomic():
        job = importer.create_import(org=other, user=user, filename="members.csv", upload=upload)
        enqueue_on_commit("contacts.tasks.import_contacts", job.pk)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.lookups_done > 0:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError("the import's lookups did not start within 10 minutes")
    job.refresh_from_db()
    return {"rows": job.total_rows, "lookups_done": job.lookups_done, "import": job.pk}


def probe(seconds, port):
    """Start the broadcast; every PROBE_EVERY seconds while it sends, a staff send and a STOP;
    then wait for the STOPs to apply."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from twilio.request_validator import RequestValidator

    from contacts.models import Contact, ContactImport
    from conversations import broadcasts, sending
    from conversations.models import Broadcast, MessageEvent, Sender

    sender = Sender.objects.select_related("organization").get(phone_number=SHORT_CODE)
    org = sender.organization
    user = get_user_model().objects.get(username="bench-latency")
    members = list(
        Contact.objects.filter(organization=org).order_by("-id").values_list("pk", flat=True)
    )
    inbound_url = f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/inbound/"
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    sends, stops, threads = [], {}, []
    started = time.time()
    with transaction.atomic():
        broadcasts.broadcast_start(
            org=org, sender=sender, body=BROADCAST_BODY, kind=Broadcast.Audience.ALL, by=user
        )
    # Probed while the broadcast sends (at most `seconds`).
    seconds = min(seconds, len(members) / RATE)
    n = 0
    while time.time() - started < seconds:
        tick = started + n * PROBE_EVERY
        time.sleep(max(0.0, tick - time.time()))
        staff_to = Contact.objects.get(pk=members[2 * n])
        body = STAFF_BODY.format(n=n)
        created = time.time()
        sending.message_create_outbound(
            org=org, contact=staff_to, body=body, sender=sender, by=user
        )
        sends.append((staff_to.phone_e164, body, created))
        stopper = Contact.objects.get(pk=members[2 * n + 1])
        sid = "SM" + uuid.uuid4().hex
        params = {
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "MessageSid": sid,
            "SmsSid": sid,
            "From": stopper.phone_e164,
            "To": sender.phone_number,
            "Body": "STOP",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        signature = validator.compute_signature(inbound_url, params)
        thread = threading.Thread(target=_post, args=(inbound_url, params, signature, sid, stops))
        thread.start()
        threads.append(thread)
        n += 1
    seconds_probed = time.time() - started
    for thread in threads:
        thread.join()
    imports = ContactImport.objects.order_by("-id").first()
    lookups_done = imports.lookups_done if imports else 0
    deadline = time.monotonic() + 30
    applied = {}
    while time.monotonic() < deadline:
        applied = dict(
            MessageEvent.objects.filter(
                kind=MessageEvent.Kind.INBOUND, provider_sid__in=list(stops)
            )
            .exclude(processed_at=None)
            .values_list("provider_sid", "processed_at")
        )
        if len(applied) == len(stops):
            break
        time.sleep(0.5)
    latencies = [
        applied[sid].timestamp() - posted for sid, posted in stops.items() if sid in applied
    ]
    return {
        "sends": sends,
        "stops": latencies,
        "stops_missing": len(stops) - len(latencies),
        "started": started,
        "seconds": seconds_probed,
        "lookups_done": lookups_done,
    }


def _post(url, params, signature, sid, stops):
    request = urllib.request.Request(
        url, data=urlencode(params).encode(), headers={"X-Twilio-Signature": signature}
    )
    posted = time.time()
    with urllib.request.urlopen(request, timeout=30) as answer:
        if answer.status >= 300:
            raise RuntimeError(f"the inbound webhook answered {answer.status}")
    stops[sid] = posted


def inprocess(rows, seconds, port):
    """The whole product in this process, as the demo runs it: webhooks served on `port`,
    tasks on the in-process scheduler, the periodic tasks from its beat."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from django.core.wsgi import get_wsgi_application

    from config import inprocess as scheduler
    from config.celery import app

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    class Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server(
        "127.0.0.1", port, get_wsgi_application(), server_class=Threaded, handler_class=Quiet
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheduler.start_beat(app)
    loaded = load(rows)
    result = probe(seconds, port)
    server.shutdown()
    return {**result, "load": loaded}


if __name__ == "__main__":
    import django

    django.setup()
    action, *rest = sys.argv[1:]
    if action == "prepare":
        print(json.dumps(prepare(int(rest[0]))))
    elif action == "load":
        print(json.dumps(load(int(rest[0]))))
    elif action == "probe":
        print(json.dumps(probe(float(rest[0]), int(rest[1]))))
    elif action == "inprocess":
        print(json.dumps(inprocess(int(rest[0]), float(rest[1]), int(rest[2]))))
    os._exit(0)  # daemon threads of the scheduler and the server end with the process
