"""API key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

A JWT-shaped bearer value is an identity provider's token, left to the next authentication
class; ``X-API-Key`` carries keys only.

One indexed query per request fetches the key and its owner together (SHA-256 of the raw key,
unique index). Nothing about a key's validity is cached, so a revocation committed by one
worker is seen by every worker on the very next request.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

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

logger = logging.getLogger(__name__)

AUTH_HEADER_VALUE = 'Bearer realm="api", ApiKey realm="X-API-Key"'


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
        key = key_with_owner(keys.hash_key(raw))
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
        authenticated_with_key(key.pk, key.key_hint)
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return AUTH_HEADER_VALUE

    def _fail(self, request: Request, message: str, *, reason: str, key: APIKey | None = None) -> NoReturn:
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
