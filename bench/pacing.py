"""`pacing`: four worker processes share one sender's pace through Redis.

Each process takes send slots for the same sender key with config.pacing (the Lua
script in Redis) and records when its slots fall. Floors: together they reach at least 95 % of
the sender's rate, and no sliding one-second window ever holds more slots than the rate allows.
"""

import multiprocessing
import os
import time

from bench.common import BenchmarkError, Figure

RATE, SECONDS, WORKERS = 10.0, 10.0, 4
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


def _worker(key, ready, go, deadline, queue):
    # A fresh interpreter (spawned): settings are read here, with REDIS_URL set, whatever
    # benchmark ran before in the parent (a forked child would inherit settings without it,
    # and each process would pace alone, in memory).
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings

    from config.pacing import take_slot, wait_for_slot

    if settings.REDIS_URL != REDIS_URL:
        raise RuntimeError(f"pacing worker without Redis (REDIS_URL={settings.REDIS_URL!r})")
    # Import redis, connect and load the script before the clock starts (half a second each,
    # four processes on two cores), so the measured seconds hold only the pacing itself.
    take_slot(f"{key}-warm-up", 1000)

    ready.release()
    go.wait()
    slots, woke = [], []
    while True:
        slot = wait_for_slot(key, RATE)
        if slot > deadline.value:
            break
        slots.append(slot)
        woke.append(time.time())  # when this worker would call Twilio
    queue.put((slots, woke))


def worst_window(slots, width=1.0):
    """The most slots in any half-open window [t, t + width)."""
    slots = sorted(slots)
    worst, start = 0, 0
    for end, moment in enumerate(slots):
        while moment - slots[start] >= width:
            start += 1
        worst = max(worst, end - start + 1)
    return worst


def run():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise BenchmarkError(f"pacing needs Redis at {REDIS_URL}: {exc}") from exc
    key = f"bench-{time.time_ns()}"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    ready, go = context.Semaphore(0), context.Event()
    deadline = context.Value("d", 0.0)
    workers = [
        context.Process(target=_worker, args=(key, ready, go, deadline, queue))
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:  # every process set up before the clock starts
        if not ready.acquire(timeout=60):
            for worker in workers:
                worker.terminate()
            raise BenchmarkError("a pacing process did not start (see its error above)")
    now = redis.Redis.from_url(REDIS_URL).time()
    deadline.value = now[0] + now[1] / 1e6 + SECONDS
    go.set()
    results = [queue.get(timeout=SECONDS + 60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    slots = [slot for taken, _ in results for slot in taken]
    calls = [moment for _, woke in results for moment in woke]
    slots.sort()
    span = slots[-1] - slots[0] if len(slots) > 1 else 0
    achieved = (len(slots) - 1) / span if span else 0.0
    share = 100 * achieved / RATE
    worst = worst_window(slots)
    worst_calls = worst_window(calls)
    per_worker_min = len(slots) // WORKERS
    return [
        Figure("pacing", "sender rate", RATE, "msg/s"),
        Figure("pacing", f"slots taken by {WORKERS} processes", len(slots), ""),
        Figure("pacing", "achieved share of the rate", share, "%", ">= 95 %", share >= 95),
        Figure("pacing", "worst sliding 1 s window", worst, "msgs", f"<= {RATE:g}", worst <= RATE),
        Figure(
            "pacing",
            "worst 1 s window of the actual calls",
            worst_calls,
            "msgs",
            f"<= {RATE:g}",
            worst_calls <= RATE,
        ),
        Figure("pacing", "slots of the least busy process (about a quarter)", per_worker_min, ""),
    ]
