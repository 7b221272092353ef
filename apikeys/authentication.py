"""API key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

A JWT-shaped bearer value is an identity provider's token, left to the next authentication
class; ``X-API-Key`` carries keys only.

One indexed query fetches the key and its owner together (SHA-256 of the raw key, unique
index), and each worker reuses what it fetched for KEY_REUSE_SECONDS: at a few hundred requests
a second per key, that saves a round trip on nearly every request. The bound is the promise: a
key revoked, expired, rotated past its grace, or whose owner was deactivated or deleted, is
refused by every worker on every host within KEY_REUSE_SECONDS (half a second) of the change
committing; by the worker that made the change (a revoke or rotate through the API or admin), at
once. Expiry itself is checked on every request against the clock.
"""

from __future__ import annotations

import logging
import threading
from time import monotonic
from typing import Any, NoReturn, TypeVar

from django.db.models import Model
from django.db.models.base import ModelState
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.oidc.tokens import looks_like_jwt
from apikeys import keys
from apikeys.models import APIKey
from apikeys.queries import key_with_owner
from apikeys.throttling import AuthFailureThrottle
from audit.models import AuditLog
from audit.services import audit_log_record
from config.context import authenticated_with_key
from config.observability import metrics

logger = logging.getLogger(__name__)

AUTH_HEADER_VALUE = 'Bearer realm="api", ApiKey realm="X-API-Key"'

# How long a worker reuses a key and its owner as fetched (see the module's docstring).
KEY_REUSE_SECONDS = 0.5
_RECENT_LIMIT = 4096
_recent: dict[str, tuple[float, APIKey]] = {}
_recent_lock = threading.Lock()
_M = TypeVar("_M", bound=Model)


def _copy(instance: _M) -> _M:
    """A copy of a loaded row for one request: its own attributes and state, no shared cache."""
    clone = instance.__class__.__new__(instance.__class__)
    clone.__dict__.update(instance.__dict__)
    clone._state = ModelState()
    clone._state.adding = False
    clone._state.db = instance._state.db
    return clone


def recent_key_with_owner(key_hash: str) -> APIKey | None:
    """``key_with_owner``, reused for KEY_REUSE_SECONDS per process; each caller gets its own
    copies, so nothing one request does to them reaches another."""
    now = monotonic()
    hit = _recent.get(key_hash)
    if hit is None or now - hit[0] >= KEY_REUSE_SECONDS:
        key = key_with_owner(key_hash)
        if key is None:
            _recent.pop(key_hash, None)  # unknown keys are not remembered: one is made any moment
            return None
        with _recent_lock:
            if len(_recent) >= _RECENT_LIMIT:
                _recent.clear()
            _recent[key_hash] = (now, key)
        hit = (now, key)
    key = _copy(hit[1])
    APIKey.user.field.set_cached_value(key, _copy(hit[1].user))
    return key


def forget_recent_key(key_hash: str) -> None:
    """This process stops reusing a key it fetched (its revocation or rotation just committed)."""
    _recent.pop(key_hash, None)


def forget_recent_keys() -> None:
    _recent.clear()


def extract_raw_key(request: Request) -> str | None:
    """The key from the request headers, or None if neither header is present."""
    header = request.META.get("HTTP_AUTHORIZATION")
    if header:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            credentials = credentials.strip()
            # An identity provider's JWT is accounts.oidc.authentication's to check.
            return None if looks_like_jwt(credentials) else credentials
        return None
    api_key = request.META.get("HTTP_X_API_KEY")
    if api_key is not None:
        return api_key.strip()
    return None


class APIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, APIKey] | None:
        raw = extract_raw_key(request)
        if raw is None:
            return None
        if not keys.is_well_formed(raw):
            # Checked without touching the database: wrong shape or bad checksum.
            self._fail(request, "Malformed API key.", reason="malformed")
        key_hash = keys.hash_key(raw)
        key = recent_key_with_owner(key_hash)
        if key is None:
            self._fail(request, "Invalid API key.", reason="unknown")
        state = key.state
        if state == APIKey.State.REVOKED:
            self._fail(request, "API key has been revoked.", reason="revoked", key=key)
        elif state == APIKey.State.EXPIRED:
            self._fail(request, "API key has expired.", reason="expired", key=key)
        elif key.user.deleted_at is not None or not key.user.is_active:
            self._fail(request, "The key's owner is inactive.", reason="owner_inactive", key=key)
        key.update_last_used()
        kept = _recent.get(key_hash)
        if kept is not None:  # the write was tried: no other request of this worker repeats it
            kept[1].last_used_at = key.last_used_at
        authenticated_with_key(key.pk, key.key_hint)
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return AUTH_HEADER_VALUE

    def _fail(self, request: Request, message: str, *, reason: str, key: APIKey | None = None) -> NoReturn:
        metrics.record_auth_failure(reason)
        if reason != "malformed":
            # A malformed key cost nothing (no query); a well-formed one cost a lookup, so those
            # are counted per client address, and each writes a row: someone holds a key-shaped
            # secret.
            throttle = AuthFailureThrottle()
            if not throttle.record_failure(request):
                raise exceptions.Throttled(wait=throttle.wait())
            audit_log_record(
                action=AuditLog.Action.FAILED_AUTH,
                resource_type="api_key",
                resource_id=key.pk if key else None,
                actor=key.user_id if key else None,
                metadata={"reason": reason},
                response_status=401,
            )
        logger.info("api key authentication failed", extra={"reason": reason})
        raise exceptions.AuthenticationFailed(message)
