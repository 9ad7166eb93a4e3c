"""Pacing (SPEC §5): never above a rate (a sender's throughput, LOOKUP_RATE), across every worker.

Each sender has a "next free slot" time. Taking a slot moves it forward by 1/rate seconds and
tells the caller how long to wait for its slot. With Redis, the slot lives in Redis and is taken
by one small Lua script (atomic, clock from Redis's TIME, so worker clocks don't matter): every
worker on every machine shares it. Without Redis, a lock-protected dict does the same inside the
process.
"""

import random
import threading
import time

from django.conf import settings

# KEYS[1]: the sender's slot key. ARGV[1]: interval in microseconds. ARGV[2]: the horizon in
# microseconds, 0 for none. Returns the wait in microseconds before the caller's slot, or -1
# and the next slot when that slot lies beyond the horizon (nothing is taken).
_TAKE_SLOT = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2] or '0')
local next_us = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_us < now_us then next_us = now_us end
if horizon > 0 and next_us - now_us > horizon then return {-1, next_us - now_us} end
local keep_ms = math.ceil((next_us + interval - now_us) / 1000) + 60000
redis.call('SET', KEYS[1], string.format('%d', next_us + interval), 'PX', keep_ms)
return {next_us - now_us, next_us}
"""

# Slots are spaced 2 % wider than 1/rate: a worker that wakes a few milliseconds late must not
# make any one-second window of real calls hold more than the rate.
SPACING_MARGIN = 1.02

_local_lock = threading.Lock()
_local_next = {}
_redis = None
_script = None


def _redis_script():
    global _redis, _script
    if _script is None:
        import redis

        _redis = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        _script = _redis.register_script(_TAKE_SLOT)
    return _script


def slot_key(sender_key):
    return f"reachable:pace:{sender_key}"


def take_slot(sender_key, rate, horizon=None):
    """Reserve the next send slot of `sender_key` at `rate` msg/s; returns (wait_s, slot_ts).

    slot_ts is the slot's time in seconds (Redis's clock with Redis, time.time() without).
    With a `horizon` (seconds), a slot further away than that is not taken: (None, how far
    away it is) comes back instead.
    """
    interval_us = int(round(1_000_000 * SPACING_MARGIN / float(rate)))
    horizon_us = int(horizon * 1_000_000) if horizon else 0
    if settings.REDIS_URL:
        keys, args = [slot_key(sender_key)], [interval_us, horizon_us]
        wait_us, slot_us = _redis_script()(keys=keys, args=args)
        if wait_us < 0:
            return None, slot_us / 1_000_000
        return wait_us / 1_000_000, slot_us / 1_000_000
    with _local_lock:
        now = time.time()
        slot = max(_local_next.get(sender_key, 0.0), now)
        if horizon_us and slot - now > horizon_us / 1_000_000:
            return None, slot - now
        _local_next[sender_key] = slot + interval_us / 1_000_000
    return slot - now, slot


def wait_for_slot(sender_key, rate, sleep=time.sleep, horizon=None):
    """Block until this caller's slot of `sender_key`; returns the slot's time.

    Bulk sends pass a `horizon`: they book a slot only when it is at most that far away, so a
    broadcast never books the sender's next minutes and an interactive send (no horizon) takes
    the first slot after the few already booked.
    """
    wait, slot = take_slot(sender_key, rate, horizon)
    while wait is None:
        # Come back when the slot is within the horizon, staggered so that waiting workers do
        # not all ask at once.
        sleep(max(slot - horizon, 0.0) + random.uniform(0, 1.0 / float(rate)))
        wait, slot = take_slot(sender_key, rate, horizon)
    if wait > 0:
        sleep(wait)
    return slot
