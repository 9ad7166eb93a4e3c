"""Pacing (SPEC §5): never above a rate (a sender's throughput, LOOKUP_RATE), across every worker.

Each sender has a "next free slot" time. Taking a slot moves it forward by 1/rate seconds and
tells the caller how long to wait for its slot. With Redis, the slot lives in Redis and is taken
by one small Lua script (atomic, clock from Redis's TIME, so worker clocks don't matter): every
worker on every machine shares it. Without Redis, a lock-protected dict does the same inside the
process.
"""

import collections
import logging
import math
import os
import random
import threading
import time

from django.conf import settings

log = logging.getLogger(__name__)

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

# KEYS[1]: the sender's recent calls (a sorted set of call times). ARGV[1]: the most calls in
# any window. ARGV[2]: a member unique to this call. ARGV[3]: the window, in microseconds.
# Returns 0 when the call may go now (it is recorded), else the microseconds until the oldest
# call of the window leaves it.
_ADMIT = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_us - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_us, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], 2000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(oldest[2]) + window - now_us + 1
"""

# KEYS[1]: the sender's recent calls. ARGV[1]: a call's member. The call went out only now:
# its record moves to now (never earlier, and not back in once it has left the window).
_WENT = """
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
redis.call('ZADD', KEYS[1], 'XX', 'GT', now_us, ARGV[1])
return 0
"""

# Slots are spaced 2 % wider than 1/rate, so that a worker waking a few milliseconds late
# rarely finds the last second full; when it does, the window check makes it wait.
SPACING_MARGIN = 1.02
# The window that holds at most `window_limit` calls: a second, and a few milliseconds more,
# so that calls a few milliseconds apart on their way to the provider (the time from Redis's
# answer to the request's bytes) do not carry the limit over into a second of their own.
WINDOW = 1.005  # seconds
# A call written longer than this after it asked to be admitted is counted as of its writing.
LATE_ANSWER = 0.004  # seconds

_local_lock = threading.Lock()
_local_next = {}
_local_calls = {}
_redis = None
_script = None
_admit_script = None
_went_script = None
_admitted = threading.local()  # this thread's last admitted call: (sender key, name, when)


def _redis_script():
    global _redis, _script, _admit_script, _went_script
    if _script is None:
        import redis

        _redis = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        _admit_script = _redis.register_script(_ADMIT)
        _went_script = _redis.register_script(_WENT)
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


def window_limit(rate):
    """The most calls of a sender in any one second: its rate as the slots space it (98 of a
    100 msg/s short code, so that a call the network holds back a few milliseconds does not
    crowd the next second), and never fewer than one."""
    return max(1, math.floor(float(rate) / SPACING_MARGIN + 0.5))


def admit(sender_key, rate, call=None):
    """Record a call of `sender_key` now if the last WINDOW holds fewer than its limit;
    returns 0.0 when recorded, else the seconds to wait before asking again. `call` names the
    call's record (`call_went` moves it)."""
    limit = window_limit(rate)
    call = call or os.urandom(8).hex()
    if settings.REDIS_URL:
        _redis_script()
        window_us = int(WINDOW * 1_000_000)
        keys, args = [f"{slot_key(sender_key)}:calls"], [limit, call, window_us]
        return _admit_script(keys=keys, args=args) / 1_000_000
    with _local_lock:
        now = time.time()
        calls = _local_calls.setdefault(sender_key, collections.deque())
        while calls and calls[0][0] <= now - WINDOW:
            calls.popleft()
        if len(calls) < limit:
            calls.append((now, call))
            return 0.0
        return calls[0][0] + WINDOW - now + 1e-6


def wait_for_slot(sender_key, rate, sleep=time.sleep, horizon=None, window=True):
    """Block until this caller's slot of `sender_key`, and until the last second of its calls
    has room; returns the slot's time.

    Bulk sends pass a `horizon`: they book a slot only when it is at most that far away, so a
    broadcast never books the sender's next minutes and an interactive send (no horizon) takes
    the first slot after the few already booked.

    A worker can wake from its wait late (a busy machine, a pause of the interpreter) while
    the next ones wake on time: their calls would bunch up. So the call itself is counted, at
    the moment it goes (`admit`): no sliding window (a second and WINDOW's few milliseconds
    more) ever holds more than `window_limit` calls. `window=False` leaves that out (tests
    that do not sleep).

    The window is Redis's count, and a call reaches the provider a little after Redis counted
    it: more when the process is held up (by the machine, by its other threads) between
    Redis's answer and the request's bytes. A call written more than LATE_ANSWER after it
    asked to be admitted is counted again as of when it was written (`call_went`, from the
    HTTP layer); what is left, a few milliseconds, is within the window's margin.
    """
    wait, slot = take_slot(sender_key, rate, horizon)
    while wait is None:
        # Come back when the slot is within the horizon, staggered so that waiting workers do
        # not all ask at once.
        sleep(max(slot - horizon, 0.0) + random.uniform(0, 1.0 / float(rate)))
        wait, slot = take_slot(sender_key, rate, horizon)
    if wait > 0:
        sleep(wait)
    call = os.urandom(8).hex()
    while window:
        asked = time.monotonic()
        wait = admit(sender_key, rate, call)
        if not wait:
            _admitted.call = (sender_key, call, asked)
            break
        sleep(wait)
    return slot


def call_went():
    """The call this thread was last admitted for has just been written to the provider.

    When that came more than LATE_ANSWER after it asked to be admitted (the thread held up in
    between), the call's record moves to now: it counts in the second it went out in, and it
    leaves the window as much later. Never raises: the call has gone.
    """
    admitted = getattr(_admitted, "call", None)
    _admitted.call = None
    if admitted is None:
        return
    sender_key, call, at = admitted
    if time.monotonic() - at <= LATE_ANSWER:
        return
    try:
        if settings.REDIS_URL:
            _redis_script()
            _went_script(keys=[f"{slot_key(sender_key)}:calls"], args=[call])
            return
        with _local_lock:
            calls = _local_calls.get(sender_key, ())
            for entry in calls:
                if entry[1] == call:
                    calls.remove(entry)
                    calls.append((time.time(), call))
                    break
    except Exception as exc:  # Redis gone: the window counts the call as admitted
        log.warning("pacing could not move call %s of %s: %s", call, sender_key, exc)
