"""`callbacks`: signed status callbacks per second through gunicorn + PostgreSQL (+ Redis).

gunicorn serves the product (DEBUG off, every middleware) on a loopback port, on a database of
its own (`reachable_bench_cb`, created and migrated when missing) and a Redis database of its
own. A second process (bench.loadclient) sends requests over 16 connections: to a bare view on
the same stack (every middleware, returns 204), then as many signed callbacks to the status
webhook; three such rounds, and the figures are the medians of the rounds (a shared machine's
noise hits a round, not the result). Two stacks (STACKS): gunicorn as deployed, with
config/gunicorn.py, where the floors apply: the webhook's rate at least half the bare view's,
its p99 at most 50 ms; and keep-alive threads, for information. On both, every answer 2xx and
no callback lost (each one stored). Applying the stored events is `events`' to measure.

The database chores (migrate, seed, count, process) run in child processes on that database,
so this benchmark neither needs nor touches the database of the others.

    uv run python -m bench.callbacks prepare|tally ...   (the children; not for direct use)
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import BenchmarkError, Figure, child_env, own_database, served_env

COUNT, BARE_COUNT, WARM_UP, CONCURRENCY, ROUNDS = 4000, 4000, 400, 16, 3
# The stacks measured. "production" is config/gunicorn.py as deployed (sync workers, 2 × cores
# + 1, access log; no keep-alive, so every request opens a connection, as behind a proxy):
# the floors apply to it. "keep-alive" (gthread, 3 workers × 4 threads, connections kept open)
# is measured for information: with no connection set-up, the bare view is cheaper still.
STACKS = {
    "production": ["-c", "config/gunicorn.py"],
    "keep-alive": ["--worker-class", "gthread", "--workers", "3", "--threads", "4"],
}
DATABASE = os.environ.get("BENCH_CALLBACKS_DATABASE", "reachable_bench_cb")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
TOKEN = "bench-auth-token"
ORG_SLUG = "bench-callbacks"
ROOT = Path(__file__).resolve().parent.parent


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# In the parent -----------------------------------------------------------------------------------


def child(url, *args):
    """Run `python -m bench.callbacks ARGS` on the bench database; its last line, as JSON."""
    env = child_env(url)
    command = [sys.executable, "-m", "bench.callbacks", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise BenchmarkError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_server(url, port, stack):
    env = served_env(
        url,
        redis_url=REDIS_URL,
        port=port,
        DJANGO_SETTINGS_MODULE="bench.settings",
        TWILIO_AUTH_TOKEN=TOKEN,
        SMS_BACKEND="simulator",
    )
    command = [sys.executable, "-m", "gunicorn", "bench.wsgi", *STACKS[stack]]
    command += ["--bind", f"127.0.0.1:{port}", "--keep-alive", "30", "--log-level", "warning"]
    # The access log is written, as in production, but not shown.
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise BenchmarkError("gunicorn did not answer /healthz within 30 s")


def load(port, path, count, prefix):
    command = [sys.executable, "-m", "bench.loadclient", "--port", str(port), "--path", path]
    command += ["--token", TOKEN, "--count", str(count)]
    command += ["--concurrency", str(CONCURRENCY), "--prefix", prefix]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise BenchmarkError(f"the load client failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def forget_queued_tasks():
    """No worker listens to the bench's Redis database: drop what the webhook enqueued."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).delete("celery", "reachable:events:requested")
    except redis.RedisError as exc:
        print(f"could not clean {REDIS_URL}: {exc}", file=sys.stderr)


def measure(url, stack, run_id):
    """ROUNDS of the bare view, then the webhook, on one stack: (bare runs, webhook runs)."""
    port = free_port()
    server = start_server(url, port, stack)
    bare, hook = [], []
    path = "/webhooks/twilio/status/"
    try:
        load(port, "/bench/bare/", WARM_UP, f"warm-bare-{run_id}-{stack}")
        load(port, path, WARM_UP, f"warm-{run_id}-{stack}")
        for n in range(ROUNDS):
            bare.append(load(port, "/bench/bare/", BARE_COUNT, f"bare-{run_id}-{n}"))
            hook.append(load(port, path, COUNT, main_run(run_id, stack, n)))
            print(
                f"{stack} round {n + 1}: bare {bare[-1]['rate']:.0f} req/s, "
                f"webhook {hook[-1]['rate']:.0f} req/s, p99 {hook[-1]['p99_ms']:.1f} ms",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return bare, hook


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def ratio(bare, hook):
    """The median over rounds of webhook rate / bare rate (each round measured back to back)."""
    return statistics.median(h["rate"] / b["rate"] for h, b in zip(hook, bare, strict=True))


def run():
    import redis

    url = own_database(DATABASE)
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise BenchmarkError(f"callbacks needs Redis at {REDIS_URL}: {exc}") from exc
    child(url, "prepare")
    run_id = f"bench{int(time.time())}"
    try:
        results = {stack: measure(url, stack, run_id) for stack in STACKS}
    finally:
        forget_queued_tasks()
    runs = [main_run(run_id, stack, n) for stack in STACKS for n in range(ROUNDS)]
    tally = child(url, "tally", *runs)
    bare, hook = results["production"]
    sent = sum(r["requests"] for runs in results.values() for r in runs[1])
    lost = sent - tally["stored"]
    errors = sum(r["errors"] for runs in results.values() for r in runs[1])
    share = ratio(bare, hook)
    p99 = median(hook, "p99_ms")
    kept_bare, kept_hook = results["keep-alive"]
    return [
        Figure("callbacks", "bare view on the same stack", median(bare, "rate"), "req/s"),
        Figure("callbacks", "signed status webhook", median(hook, "rate"), "req/s"),
        Figure("callbacks", "webhook / bare view", share, "x", ">= 0.5", share >= 0.5),
        Figure("callbacks", "bare view p99", median(bare, "p99_ms"), "ms"),
        Figure("callbacks", "webhook p50", median(hook, "p50_ms"), "ms"),
        Figure("callbacks", "webhook p99", p99, "ms", "<= 50 ms", p99 <= 50),
        Figure("callbacks", "webhook p99, worst round", max(r["p99_ms"] for r in hook), "ms"),
        Figure("callbacks", "keep-alive: bare view", median(kept_bare, "rate"), "req/s"),
        Figure(
            "callbacks", "keep-alive: signed status webhook", median(kept_hook, "rate"), "req/s"
        ),
        Figure("callbacks", "keep-alive: webhook / bare view", ratio(kept_bare, kept_hook), "x"),
        Figure("callbacks", "keep-alive: webhook p99", median(kept_hook, "p99_ms"), "ms"),
        Figure("callbacks", f"errors (non-2xx) of {sent}", errors, "", "0", errors == 0),
        Figure("callbacks", "callbacks lost (sent - stored)", lost, "", "0", lost == 0),
    ]


def main_run(run_id, stack, n):
    return f"main-{run_id}-{stack}-{n}"


# In the children, on the bench database ---------------------------------------------------------


def prepare():
    """Migrate; one org and its sender; no events stored, so every run starts alike."""
    import django

    django.setup()
    from django.core.management import call_command

    from contacts.models import Organization
    from conversations.models import MessageEvent, Sender

    call_command("migrate", interactive=False, verbosity=0)
    org, _ = Organization.objects.get_or_create(slug=ORG_SLUG, defaults={"name": "Bench Callbacks"})
    Sender.objects.get_or_create(organization=org, phone_number="+16175552001")
    MessageEvent.objects.all().delete()
    return {"events": 0}


def tally(*runs):
    """How many of the runs' callbacks were stored (their SIDs name the run)."""
    import django

    django.setup()
    from bench.loadclient import run_sid
    from conversations.models import MessageEvent

    stored = 0
    for run in runs:
        prefix = "status:" + run_sid(run, 0)[:10]
        stored += MessageEvent.objects.filter(idempotency_key__startswith=prefix).count()
    return {"stored": stored}


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        print(json.dumps(prepare()))
    elif sys.argv[1:2] == ["tally"] and len(sys.argv) > 2:
        print(json.dumps(tally(*sys.argv[2:])))
    else:
        sys.exit(__doc__)
