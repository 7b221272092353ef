"""Rate strings as DRF writes them ("100/hour", "600/min", "10/s") plus "none" for unlimited."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

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
