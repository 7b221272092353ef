"""Rate limits: the one home for reading a rate and counting against it.

Rates are written as DRF writes them (``100/hour``, ``600/min``, ``10/s``) plus ``none`` for
unlimited. Counters are fixed windows in the shared cache (the database cache by default,
Redis when REDIS_URL is set), so every gunicorn worker, and every app host, counts against the
same number. The API's tier throttle and failed-authentication throttle (``apikeys.throttling``)
and the admin's login throttle (``accounts.admin_site``) all count here.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

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


def _increment(key: str, period: int) -> int:
    try:
        return cache.incr(key)
    except ValueError:  # first hit of this window
        pass
    if cache.add(key, 1, timeout=period + 1):
        return 1
    return cache.incr(key)  # another worker created it first


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
