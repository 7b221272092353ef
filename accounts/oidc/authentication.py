"""API authentication with an identity provider's token: ``Authorization: Bearer <JWT>``.

Listed after ``apikeys.authentication.APIKeyAuthentication``, which leaves JWT-shaped bearer
values to this class (``sk_...`` stays an API key; ``X-API-Key`` carries keys only). Once the
provider's keys are held, a request costs no network call and one query (the user).

What a token may do (``request.auth.scopes``): read and write, as a ``read,write`` key; ``admin``
too for a platform admin (role admin or super_admin), as a key of theirs could hold. Token
requests are rate-limited per user at OIDC_RATE_LIMIT_TIER (all of a user's tokens share one
counter, so fetching new tokens buys no quota).

A refused token answers 401 with ``{"detail": ..., "code": "token_..."}`` naming the check that
failed, writes a FAILED_AUTH audit row (the reason, never the token) and counts toward
AUTH_FAILURE_RATE for the client address, past which it answers 429. A provider whose keys
cannot be had at all answers 503 with Retry-After.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import NoReturn

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.models import User
from accounts.oidc import keys
from accounts.oidc.identity import IdentityRefused, identity_of
from accounts.oidc.tokens import TokenRejected, looks_like_jwt, verify
from accounts.services import user_for_identity
from apikeys.throttling import AuthFailureThrottle
from audit.models import AuditLog
from audit.services import audit_log_record
from config.api.permissions import scopes_for
from config.observability import metrics

logger = logging.getLogger(__name__)


class IdentityProviderUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The identity provider is unreachable and its signing keys are not known yet; retry shortly."
    default_code = "identity_provider_unavailable"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.wait = retry_after  # DRF's handler turns it into Retry-After


@dataclass(frozen=True)
class IdentityToken:
    """``request.auth`` of a token request: what the token may do, never the token itself."""

    provider: str  # azure_ad, aws_cognito, oidc
    user_id: uuid.UUID
    scopes: frozenset[str]
    rate_limit_tier: str

    @property
    def rate_limit_counter(self) -> str:
        return f"user:{self.user_id}"


def bearer_token(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION") or ""
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not looks_like_jwt(credentials):
        return None
    return credentials


class IdentityTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[User, IdentityToken] | None:
        raw = bearer_token(request)
        if raw is None:
            return None
        try:
            verified = verify(raw)
            user = user_for_identity(identity=identity_of(verified), auto_provision=settings.OIDC_AUTO_PROVISION)
        except TokenRejected as exc:
            self._fail(request, exc.code, exc.message, provider=exc.provider.key if exc.provider else None)
        except IdentityRefused as exc:
            self._fail(request, exc.code, exc.message, provider=verified.provider.key, user=exc.user)
        except keys.ProviderUnavailable as exc:
            raise IdentityProviderUnavailable(exc.retry_after) from None
        token = IdentityToken(
            provider=verified.provider.key,
            user_id=user.pk,
            scopes=scopes_for(user),
            rate_limit_tier=settings.OIDC_RATE_LIMIT_TIER,
        )
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

    def _fail(
        self, request: Request, code: str, message: str, *, provider: str | None, user: User | None = None
    ) -> NoReturn:
        metrics.record_auth_failure(code)
        throttle = AuthFailureThrottle()
        if not throttle.record_failure(request):
            raise exceptions.Throttled(wait=throttle.wait())
        audit_log_record(
            action=AuditLog.Action.FAILED_AUTH,
            resource_type="user",
            resource_id=user.pk if user else None,
            actor=user.pk if user else None,
            metadata={"reason": code, "provider": provider, "credential": "identity_token"},
            response_status=401,
        )
        logger.info("identity token refused", extra={"reason": code, "provider": provider})
        raise exceptions.AuthenticationFailed(message, code=code)
