"""Rate limits: the one home for reading a rate and counting against it.

Rates are written as DRF writes them (``100/hour``, ``600/min``, ``10/s``) plus ``none`` for
unlimited. Counters are fixed windows shared by every gunicorn worker and every app host: in
Redis when REDIS_URL is set (INCR and EXPIRE ... NX in one round trip), else in PostgreSQL
(config.db.counters: one upsert statement). The API's tier throttle and failed-authentication throttle (``apikeys.throttling``)
and the admin's login throttle (``accounts.admin_site``) all count here.
"""

from __future__ import annotations

import logging
import time
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


# INCR and, on a window's first hit, its expiry: one atomic round trip (EVALSHA of a cached
# script; redis-py loads it again if the server forgot it).
_INCREMENT_LUA = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
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


def _increment(key: str, period: int) -> int:
    """One more hit on ``key``, whose window lasts ``period`` seconds; the count so far."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        # make_key, not make_and_validate_key: the keys are ours (ASCII, no spaces), and the
        # validation only warns about memcached.
        return int(_redis_increment(backend)(keys=[backend.make_key(key)], args=[period + 1]))
    return counters.increment(key, expires=timezone.now() + timedelta(seconds=period + 1))


def hit(counter: str, limit: int, period: int) -> tuple[bool, int]:
    """Count one hit in the current window; return (allowed, seconds until the window ends)."""
    now = time.time()
    window = int(now // period)
    reset_in = max(1, int((window + 1) * period - now + 0.999))
    try:
        count = _increment(f"rl:{counter}:{period}:{window}", period)
    except Exception as exc:  # the cache is down: prefer serving to refusing everyone
        logger.warning("rate-limit cache unavailable, not counting: %s", type(exc).__name__)
        return True, reset_in
    return count <= limit, reset_in
