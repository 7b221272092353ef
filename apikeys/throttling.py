"""Rate limits per API key by tier, and per client address for failed authentication.

Counters are fixed windows in the shared cache (the database cache by default, Redis when
REDIS_URL is set), so every gunicorn worker counts against the same number. An unlimited tier
touches no counter at all.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from audit.context import client_ip
from config.rates import parse_rate

logger = logging.getLogger(__name__)


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


class TierRateThrottle(BaseThrottle):
    """free 100/hour, pro 1000/hour, enterprise unlimited (RATE_LIMIT_* override them)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        key = request.auth
        tier = getattr(key, "rate_limit_tier", None)
        if tier is None:
            return True  # staff session in the browsable API
        rate = parse_rate(settings.RATE_LIMITS.get(tier, "none"))
        if rate is None:
            return True
        limit, period = rate
        allowed, self._wait = hit(f"key:{key.pk}", limit, period)
        return allowed

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)


class AuthFailureThrottle:
    """Failed authentications per client address (AUTH_FAILURE_RATE, default 30/min)."""

    def record_failure(self, request: Request) -> bool:
        rate = parse_rate(settings.AUTH_FAILURE_RATE)
        if rate is None:
            return True
        limit, period = rate
        address = client_ip(request) or "unknown"
        allowed, self._wait = hit(f"authfail:{address}", limit, period)
        return allowed

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
