"""Typed errors: one class per error code the service answers, a base class per status.

The service answers errors as ``{"detail": "...", "code": "<code>"}`` (validation errors as
``{"<field>": ["..."]}`` with status 400). ``error_for`` picks the most specific class: by code
first, then by status, then ``PlatformError``.
"""

from __future__ import annotations

import datetime
import math
from email.utils import parsedate_to_datetime
from typing import Any


class PlatformError(Exception):
    """Any error answer from the service, or no answer at all (``status`` 0)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.body = body
        self.headers = headers or {}

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status else ""
        suffix = f" ({self.code})" if self.code else ""
        return f"{prefix}{self.message}{suffix}"


class TransportError(PlatformError):
    """No HTTP answer (connection refused or dropped, timeout) after every retry."""


class BadRequest(PlatformError):
    """400: the request is malformed; ``errors`` maps each field to its messages."""

    @property
    def errors(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


class AuthenticationFailed(PlatformError):
    """401: no key, an unknown, revoked or expired key."""


class PermissionDenied(PlatformError):
    """403: the key lacks the scope, or the caller the role."""


class NotFound(PlatformError):
    """404: no such resource, or it belongs to someone else."""


class Conflict(PlatformError):
    """409: the resource's state forbids the operation."""


class SessionNotActive(Conflict):
    """409 ``session_not_active``: the session is completed, failed, cancelled, deleted or expired."""


class MessageLimitReached(Conflict):
    """409 ``message_limit_reached``: the session holds as many messages as it may."""


class RevisionMismatch(Conflict):
    """409 ``revision_mismatch``: ``expected_revision`` is stale; ``revision`` is the current one."""

    @property
    def revision(self) -> int | None:
        value = self.body.get("revision") if isinstance(self.body, dict) else None
        return value if isinstance(value, int) else None


class SessionExists(Conflict):
    """409 ``session_exists``: a live session already has this ``external_id``; ``session_id`` names it."""

    @property
    def session_id(self) -> str | None:
        value = self.body.get("session_id") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None


class IdempotencyKeyInFlight(Conflict):
    """409 ``idempotency_key_in_flight``: another request with this key is still running (retried)."""


class PayloadTooLarge(PlatformError):
    """413: the body is over the service's ``API_MAX_BODY_BYTES``."""


class UnsupportedMediaType(PlatformError):
    """415: the body is not JSON."""


class IdempotencyKeyReused(PlatformError):
    """422 ``idempotency_key_reused``: the key was used before with a different body."""


class RateLimited(PlatformError):
    """429: too many requests; ``retry_after`` is the service's wait in seconds."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


class ServiceUnavailable(PlatformError):
    """502, 503 or 504: the service or its database is down or overloaded."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))


class ServerError(PlatformError):
    """Any other 5xx."""


_BY_CODE: dict[str, type[PlatformError]] = {
    "session_not_active": SessionNotActive,
    "message_limit_reached": MessageLimitReached,
    "revision_mismatch": RevisionMismatch,
    "session_exists": SessionExists,
    "idempotency_key_in_flight": IdempotencyKeyInFlight,
    "idempotency_key_reused": IdempotencyKeyReused,
}

_BY_STATUS: dict[int, type[PlatformError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    502: ServiceUnavailable,
    503: ServiceUnavailable,
    504: ServiceUnavailable,
}


def error_for(status: int, body: Any, headers: dict[str, str]) -> PlatformError:
    """The typed error for an error answer (``body`` already decoded, or the raw text)."""
    code = body.get("code") if isinstance(body, dict) and isinstance(body.get("code"), str) else None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        message = body["detail"]
    elif isinstance(body, dict) and body:
        # A validation error: {"field": ["message", ...], ...}.
        message = "; ".join(f"{field}: {_first(value)}" for field, value in body.items() if field != "code")
    else:
        message = str(body)[:500] if body else f"HTTP {status}"
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or (ServerError if status >= 500 else PlatformError)
    return cls(message, status=status, code=code, body=body, headers=headers)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)
