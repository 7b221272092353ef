"""Rate limits per API key by tier, and per client address for failed authentication.

Both count in the shared cache through ``config.ratelimit``. An unlimited tier touches no
counter at all.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from config.context import client_ip
from config.observability import metrics
from config.ratelimit import hit, parse_rate


class TierRateThrottle(BaseThrottle):
    """free 100/hour, pro 1000/hour, enterprise unlimited (RATE_LIMIT_* override them); per key,
    or per user for identity-provider tokens (their tier is OIDC_RATE_LIMIT_TIER)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        key = request.auth
        tier = getattr(key, "rate_limit_tier", None)
        if tier is None:
            return True  # staff session in the browsable API
        rate = parse_rate(settings.RATE_LIMITS.get(tier, "none"))
        if rate is None:
            return True
        limit, period = rate
        # An identity-provider token counts per user (accounts.oidc.authentication.IdentityToken).
        counter = getattr(key, "rate_limit_counter", None) or f"key:{key.pk}"
        allowed, self._wait = hit(counter, limit, period)
        if not allowed:
            metrics.record_rate_limit_refusal(tier)
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
        if not allowed:
            metrics.record_rate_limit_refusal("auth_failure")
        return allowed

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
