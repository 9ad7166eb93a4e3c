"""Per-sender pacing (SPEC §5): never above the sender's throughput, across every worker.

Each sender has a "next free slot" time. Taking a slot moves it forward by 1/rate seconds and
tells the caller how long to wait for its slot. With Redis, the slot lives in Redis and is taken
by one small Lua script (atomic, clock from Redis's TIME, so worker clocks don't matter): every
worker on every machine shares it. Without Redis, a lock-protected dict does the same inside the
process.
"""

import threading
import time

from django.conf import settings

# KEYS[1]: the sender's slot key. ARGV[1]: interval in microseconds.
# Returns the wait in microseconds before the caller's slot.
_TAKE_SLOT = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local next_us = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_us < now_us then next_us = now_us end
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


def take_slot(sender_key, rate):
    """Reserve the next send slot of `sender_key` at `rate` msg/s; returns (wait_s, slot_ts).

    slot_ts is the slot's time in seconds (Redis's clock with Redis, time.time() without).
    """
    interval_us = int(round(1_000_000 * SPACING_MARGIN / float(rate)))
    if settings.REDIS_URL:
        wait_us, slot_us = _redis_script()(keys=[slot_key(sender_key)], args=[interval_us])
        return wait_us / 1_000_000, slot_us / 1_000_000
    with _local_lock:
        now = time.time()
        slot = max(_local_next.get(sender_key, 0.0), now)
        _local_next[sender_key] = slot + interval_us / 1_000_000
    return slot - now, slot


def wait_for_slot(sender_key, rate, sleep=time.sleep):
    """Block until this caller's slot of `sender_key`; returns the slot's time."""
    wait, slot = take_slot(sender_key, rate)
    if wait > 0:
        sleep(wait)
    return slot
