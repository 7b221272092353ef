"""Rate limits: the one home for reading a rate and counting against it.

Rates are written as DRF writes them (``100/hour``, ``600/min``, ``10/s``) plus ``none`` for
unlimited. Counters are fixed windows shared by every gunicorn worker and every app host: in
Redis when REDIS_URL is set (INCRBY and EXPIRE ... NX in one round trip), else in PostgreSQL
(config.db.counters: one upsert statement). The API's tier throttle and failed-authentication throttle (``apikeys.throttling``)
and the admin's login throttle (``accounts.admin_site``) all count here.

Each process takes its hits from the shared counter in leases: one round trip adds a lease's
size to the counter and the process hands out those numbers itself, one per hit, in order, so a
window never admits more than its limit, whoever counts. A lease is one hit unless this process
has been counting that key faster than one hit per LEASE_SECONDS / 2; then it covers about
LEASE_SECONDS of that process's own rate (at most MAX_LEASE), and never more than a 32nd of
what the window still allows. What a process leased and did not use before the window ended
is counted all the same: a key in heavy use may be refused up to that many hits early (a few,
near its limit; none for a key used at an ordinary pace). Once a window is used up, the process
refuses the key until the window ends without asking again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from config.db import counters

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(value: str, *, name: str = "rate") -> tuple[int, int] | None:
    """(requests, period in seconds), or None for an unlimited rate."""
    text = (value or "").strip().lower()
    if text in {"none", "unlimited", "off", ""}:
        return None
    count, sep, period = text.partition("/")
    try:
        requests = int(count)
    except ValueError:
        requests = -1
    if not sep or requests < 1 or not period or period[0] not in PERIODS:
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate like 100/hour, 600/min or none")
    return requests, PERIODS[period[0]]


# INCRBY and, on a window's first hit, its expiry: one atomic round trip (EVALSHA of a cached
# script; redis-py loads it again if the server forgot it).
_INCREMENT_LUA = """
local amount = tonumber(ARGV[2])
local count = redis.call('INCRBY', KEYS[1], amount)
if count == amount then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def _redis_increment(backend: RedisCache) -> Any:
    """The backend's Redis client and the counting script, made once per backend (each thread
    has its own backend object): Django's cache builds a new redis-py client on every call, which
    cost more than the round trip (bench/instructions.py: +1.1 M instructions per request)."""
    script = backend.__dict__.get("_rate_limit_increment")
    if script is None:
        # Django's RedisCache keeps its client class private; the script needs the client itself.
        client = backend._cache.get_client(write=True)  # type: ignore[attr-defined]
        script = backend.__dict__["_rate_limit_increment"] = client.register_script(_INCREMENT_LUA)
    return script


def _increment(key: str, period: int, amount: int = 1) -> int:
    """``amount`` more hits on ``key``, whose window lasts ``period`` seconds; the count so far."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        # make_key, not make_and_validate_key: the keys are ours (ASCII, no spaces), and the
        # validation only warns about memcached.
        return int(_redis_increment(backend)(keys=[backend.make_key(key)], args=[period + 1, amount]))
    return counters.increment(key, expires=timezone.now() + timedelta(seconds=period + 1), amount=amount)


# A lease covers about this long of the process's own rate for a key (see the module docstring).
LEASE_SECONDS = 0.05
MAX_LEASE = 64
_LEASES_LIMIT = 4096  # keys are the clients'; a full table starts over (each key's next hit asks)


@dataclass
class _Lease:
    """This process's numbers in one key's current window: ``next`` .. ``last`` are its to hand
    out; ``size`` and ``taken`` (monotonic) say how fast it used its last lease."""

    window: int
    next: int
    last: int
    size: int
    taken: float
    used_up: bool = False


_leases: dict[tuple[str, int], _Lease] = {}
_leases_lock = threading.Lock()


def _lease_size(previous: _Lease | None, remaining: int, now: float) -> int:
    if previous is None:
        return 1
    rate = previous.size / max(now - previous.taken, 1e-3)  # hits a second through this process
    return max(1, min(int(rate * LEASE_SECONDS), MAX_LEASE, remaining // 32))


def hit(counter: str, limit: int, period: int) -> tuple[bool, int]:
    """Count one hit in the current window; return (allowed, seconds until the window ends)."""
    now = time.time()
    window = int(now // period)
    reset_in = max(1, int((window + 1) * period - now + 0.999))
    slot = (counter, period)
    with _leases_lock:
        lease = _leases.get(slot)
        if lease is not None and lease.window == window:
            if lease.used_up:
                return False, reset_in
            if lease.next <= lease.last:
                lease.next += 1
                return True, reset_in
    # A lease of an earlier window still tells the rate; nothing else of it carries over.
    moment = time.monotonic()
    size = _lease_size(lease, limit - (lease.last if lease is not None and lease.window == window else 0), moment)
    try:
        total = _increment(f"rl:{counter}:{period}:{window}", period, size)
    except Exception as exc:  # the cache is down: prefer serving to refusing everyone
        logger.warning("rate-limit cache unavailable, not counting: %s", type(exc).__name__)
        return True, reset_in
    first = total - size + 1  # this hit's number; the rest of the lease follows it
    granted = _Lease(window=window, next=first + 1, last=min(total, limit), size=size, taken=moment)
    granted.used_up = first > limit or granted.next > limit
    with _leases_lock:
        if len(_leases) >= _LEASES_LIMIT:
            _leases.clear()
        _leases[slot] = granted
    return first <= limit, reset_in


def forget_leases() -> None:
    """Drop this process's leases (tests that count a key from scratch)."""
    with _leases_lock:
        _leases.clear()
