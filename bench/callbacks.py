"""`callbacks`: signed status callbacks per second through gunicorn + PostgreSQL (+ Redis).

A second process (bench.loadclient) sends signed callbacks over 16 keep-alive connections to
the status webhook, then to a bare view on the same stack (every middleware, returns 204).
Floors: webhook rate at least half the bare view's, p99 at most 50 ms, no callback lost (every
one is stored). Afterwards the stored events are processed in-process and timed.
"""

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import (
    SMALL_ORG,
    SMALL_SIZE,
    Figure,
    bench_database_url,
    ensure_database,
    ensure_seeded,
)

COUNT, BARE_COUNT, CONCURRENCY = 4000, 4000, 16
TOKEN = "bench-auth-token"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def callback_sids(org, count=2000):
    """Messages with Twilio SIDs for the callbacks to update (made once)."""
    from conversations.models import Conversation, Message

    sids = [f"SMbench{n:027d}" for n in range(count)]
    have = set(Message.objects.filter(provider_sid__in=sids).values_list("provider_sid", flat=True))
    conversations = list(
        Conversation.objects.filter(organization=org).values_list("id", flat=True)[:count]
    )
    Message.objects.bulk_create(
        [
            Message(
                organization=org,
                conversation_id=conversations[n % len(conversations)],
                direction="outbound",
                to_number="+12125550100",
                from_number="+16175552001",
                body="Bench message",
                status="queued",
                provider_sid=sid,
                dispatch="submitted",
            )
            for n, sid in enumerate(sids)
            if sid not in have
        ],
        batch_size=2000,
    )
    return sids


def start_server(port):
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="bench.settings",
        DATABASE_URL=bench_database_url(),
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(40),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        TWILIO_AUTH_TOKEN=TOKEN,
        REDIS_URL=REDIS_URL,
        SMS_BACKEND="simulator",
        LOG_LEVEL="WARNING",
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "bench.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        "3",
        "--threads",
        "4",
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("gunicorn did not start")


def load(port, path, sids_file, count, prefix):
    command = [
        sys.executable,
        "-m",
        "bench.loadclient",
        "--port",
        str(port),
        "--path",
        path,
        "--token",
        TOKEN,
        "--sids",
        sids_file,
        "--count",
        str(count),
        "--concurrency",
        str(CONCURRENCY),
        "--prefix",
        prefix,
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run():
    ensure_database()
    from conversations.models import MessageEvent
    from conversations.services import events_process_pending

    org = ensure_seeded(SMALL_ORG, *SMALL_SIZE)
    sids = callback_sids(org)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(sids))
        sids_file = handle.name
    port = free_port()
    server = start_server(port)
    run_id = f"bench{int(time.time())}"
    try:
        load(port, "/bench/bare/", sids_file, 400, f"{run_id}-warm-bare")
        load(port, "/webhooks/twilio/status/", sids_file, 400, f"{run_id}-warm")
        bare = load(port, "/bench/bare/", sids_file, BARE_COUNT, f"{run_id}-bare")
        hook = load(port, "/webhooks/twilio/status/", sids_file, COUNT, f"{run_id}-main")
    finally:
        server.terminate()
        server.wait(timeout=30)
        os.unlink(sids_file)
    mine = MessageEvent.objects.filter(idempotency_key__startswith=f"status:{run_id}-main-")
    stored = mine.count()
    lost = COUNT - stored
    started = time.perf_counter()
    processed = 0
    while True:
        batch = events_process_pending(limit=2000)
        processed += batch
        if not batch:
            break
    processing = time.perf_counter() - started
    _forget_queued_tasks()
    ratio = hook["rate"] / bare["rate"] if bare["rate"] else 0.0
    return [
        Figure("callbacks", "bare view on the same stack", bare["rate"], "req/s"),
        Figure("callbacks", "signed status webhook", hook["rate"], "req/s"),
        Figure("callbacks", "webhook / bare view", ratio, "x", ">= 0.5", ratio >= 0.5),
        Figure("callbacks", "webhook p50", hook["p50_ms"], "ms"),
        Figure("callbacks", "webhook p99", hook["p99_ms"], "ms", "<= 50 ms", hook["p99_ms"] <= 50),
        Figure("callbacks", "errors (non-2xx)", hook["errors"], "", "0", hook["errors"] == 0),
        Figure("callbacks", "callbacks lost (sent - stored)", lost, "", "0", lost == 0),
        Figure(
            "callbacks",
            "stored events processed afterwards",
            processed / processing if processing else 0,
            "ev/s",
        ),
    ]


def _forget_queued_tasks():
    """No worker listens to the bench's Redis database: drop what the webhook enqueued."""
    import redis

    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(REDIS_URL).delete("celery", "reachable:events:requested")
