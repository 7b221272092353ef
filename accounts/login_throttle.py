"""The admin's login throttle, per client address: what the password form
(``accounts.admin_site``) and the identity-provider sign-in (``accounts.oidc.signin``) both ask.

Failed logins are counted per client address (``config.context.client_ip``, which believes
X-Forwarded-For only from TRUSTED_PROXIES) in the shared rate-limit counters. Once an address has
failed ADMIN_LOGIN_RATE times in the window, it is blocked until the window ends.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from config.context import client_ip
from config.ratelimit import hit, parse_rate

BLOCK_KEY = "admin-login-blocked:{address}"


def _address(request: HttpRequest) -> str:
    return client_ip(request) or "unknown"


def blocked_for(request: HttpRequest) -> int:
    """Seconds this client must still wait before its next login attempt (0: not blocked)."""
    try:
        until = cache.get(BLOCK_KEY.format(address=_address(request)))
    except Exception:  # the cache is down: prefer letting staff in to refusing everyone
        return 0
    if until is None:
        return 0
    return max(0, int(until - time.time() + 0.999))


def record_failure(request: HttpRequest) -> int:
    """Count one failed login; return the seconds this client is now blocked for (0: not)."""
    rate = parse_rate(settings.ADMIN_LOGIN_RATE)
    if rate is None:
        return 0
    limit, period = rate
    # Blocked from the limit-th failure on: "10/min" allows ten wrong passwords a minute.
    allowed, reset_in = hit(f"admin-login:{_address(request)}", limit - 1, period)
    if allowed:
        return 0
    try:
        cache.set(BLOCK_KEY.format(address=_address(request)), time.time() + reset_in, timeout=reset_in)
    except Exception:
        return 0
    return reset_in


def too_many_attempts(seconds: int) -> str:
    return f"Too many failed login attempts; try again in {seconds} seconds."
