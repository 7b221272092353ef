"""The admin's sign-in with an identity provider: the authorization code flow with PKCE (S256),
``state`` and ``nonce``, through Authlib's Django client.

Authlib keeps the state, nonce and code verifier in the Django session, redeems the code and
checks the ID token (signature, issuer, audience, nonce, expiry). The ID token then goes through
the same checks and user rule as an API bearer token (``tokens.verify``,
``accounts.services.user_for_identity``): the same user, provisioned and synced the same way.
A user whose roles make them staff (``accounts.roles.STAFF_ROLES``) is signed in; anyone else
sees a refusal page saying why (never the login page again). Every outcome writes a LOGIN or
FAILED_AUTH audit row; failures count toward the admin's login throttle (ADMIN_LOGIN_RATE).

Routes (``PlatformAdminSite.get_urls``): ``/admin/sign-in/<provider>/`` starts,
``/admin/sign-in/<provider>/callback/`` is the redirect URI to register with the provider.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import requests

# Authlib ships no type information (typeshed's stubs trail its releases).
from authlib.common.errors import AuthlibBaseError  # type: ignore[import-untyped]
from authlib.integrations.base_client import MismatchingStateError, OAuthError  # type: ignore[import-untyped]
from authlib.integrations.django_client import DjangoOAuth2App, OAuth  # type: ignore[import-untyped]
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from joserfc.errors import JoseError

from accounts.login_throttle import blocked_for, record_failure, too_many_attempts
from accounts.models import User
from accounts.oidc import keys
from accounts.oidc.identity import IdentityRefused, identity_of
from accounts.oidc.tokens import LEEWAY, TokenRejected, verify
from accounts.services import user_for_identity
from audit.models import AuditLog
from audit.services import audit_log_record
from config.identity_providers import IdentityProvider

logger = logging.getLogger(__name__)

SCOPE = "openid email profile"
NEXT_KEY = "oidc_sign_in_next"
REFUSED_TEMPLATE = "admin/accounts/sign_in_refused.html"
HTTP_TIMEOUT = 5


@functools.lru_cache(maxsize=16)
def _client(provider: IdentityProvider) -> DjangoOAuth2App:
    """One Authlib client per provider configuration (it caches the discovery document)."""
    return OAuth().register(
        name=provider.key,
        client_id=provider.client_id,
        # None: a public client, the code redeemed with the PKCE verifier alone.
        client_secret=provider.client_secret or None,
        server_metadata_url=provider.discovery_url,
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "default_timeout": HTTP_TIMEOUT},
    )


def sign_in_providers() -> list[IdentityProvider]:
    return [p for p in settings.IDENTITY_PROVIDERS if p.offers_sign_in]


def _provider(key: str) -> IdentityProvider:
    for provider in sign_in_providers():
        if provider.key == key:
            return provider
    raise Http404("No such identity provider is configured.")


def _page(
    request: HttpRequest, provider: IdentityProvider, *, status: int, title: str, message: str, user: User | None = None
) -> TemplateResponse:
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": title,
        "message": message,
        "provider_label": provider.label,
        "signed_in_as": user.email if user is not None else None,
    }
    return TemplateResponse(request, REFUSED_TEMPLATE, context, status=status)


def _failed(
    request: HttpRequest,
    provider: IdentityProvider,
    *,
    reason: str,
    message: str,
    status: int = 401,
    user: User | None = None,
) -> HttpResponse:
    audit_log_record(
        action=AuditLog.Action.FAILED_AUTH,
        resource_type="user",
        resource_id=user.pk if user else None,
        actor=user.pk if user else None,
        metadata={"channel": "admin", "provider": provider.key, "reason": reason},
        response_status=status,
    )
    logger.info("admin sign-in refused", extra={"reason": reason, "provider": provider.key})
    wait = record_failure(request)
    if wait:
        message = f"{message} {too_many_attempts(wait)}"
    title = "Access refused" if reason == "not_staff" else f"Sign-in with {provider.label} failed"
    return _page(request, provider, status=status, title=title, message=message, user=user)


def _unavailable(request: HttpRequest, provider: IdentityProvider) -> HttpResponse:
    response = _page(
        request,
        provider,
        status=503,
        title=f"{provider.label} is unreachable",
        message=f"{provider.label} cannot be reached right now; try again in a minute, or sign in with a password.",
    )
    response["Retry-After"] = str(int(keys.COLD_RETRY))
    return response


def _throttled(request: HttpRequest, provider: IdentityProvider, wait: int) -> HttpResponse:
    response = _page(request, provider, status=429, title="Too many attempts", message=too_many_attempts(wait))
    response["Retry-After"] = str(wait)
    return response


def _callback_url(request: HttpRequest, provider: IdentityProvider) -> str:
    return request.build_absolute_uri(reverse("admin:oidc-callback", args=[provider.key]))


def sign_in(request: HttpRequest, provider: str) -> HttpResponse:
    """Start: remember where to go afterwards, and send the browser to the provider."""
    chosen = _provider(provider)
    wait = blocked_for(request)
    if wait:
        return _throttled(request, chosen, wait)
    next_url = request.GET.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    request.session[NEXT_KEY] = next_url if safe else ""
    try:
        response: HttpResponse = _client(chosen).authorize_redirect(request, _callback_url(request, chosen))
    except (requests.RequestException, ValueError, AuthlibBaseError) as exc:
        logger.warning("identity provider unreachable", extra={"provider": chosen.key, "reason": type(exc).__name__})
        return _unavailable(request, chosen)
    return response


def callback(request: HttpRequest, provider: str) -> HttpResponse:
    """The provider sends the browser back here with a code (or an error)."""
    chosen = _provider(provider)
    wait = blocked_for(request)
    if wait:
        return _throttled(request, chosen, wait)
    try:
        token = _client(chosen).authorize_access_token(request, leeway=LEEWAY)
    except MismatchingStateError:
        return _failed(
            request,
            chosen,
            reason="state_mismatch",
            status=400,
            message="This sign-in expired or was started in another browser; start it again.",
        )
    except OAuthError as exc:
        error = str(getattr(exc, "error", "") or "error")[:40]
        return _failed(
            request, chosen, reason="provider_error", message=f"{chosen.label} did not sign you in ({error})."
        )
    except (requests.RequestException, ValueError) as exc:
        logger.warning("identity provider unreachable", extra={"provider": chosen.key, "reason": type(exc).__name__})
        return _unavailable(request, chosen)
    except (AuthlibBaseError, JoseError):
        return _failed(request, chosen, reason="id_token_invalid", message=f"{chosen.label}'s ID token is not valid.")
    raw = token.get("id_token")
    if not isinstance(raw, str):
        return _failed(request, chosen, reason="id_token_missing", message=f"{chosen.label} sent no ID token.")
    try:
        verified = verify(raw)
        if verified.provider != chosen:
            raise TokenRejected("token_invalid_issuer", f"The ID token was not issued by {chosen.label}.")
        user = user_for_identity(identity=identity_of(verified), auto_provision=settings.OIDC_AUTO_PROVISION)
    except TokenRejected as exc:
        return _failed(request, chosen, reason=exc.code, message=exc.message)
    except IdentityRefused as exc:
        return _failed(request, chosen, reason=exc.code, message=exc.message, user=exc.user)
    except keys.ProviderUnavailable:
        return _unavailable(request, chosen)
    if not user.is_staff:
        return _failed(
            request,
            chosen,
            reason="not_staff",
            status=403,
            user=user,
            message=(
                "Your account has no staff rights, so it cannot use the admin. Staff rights come from your "
                f"roles in {chosen.label} (admin, developer or viewer); ask an administrator to grant one."
            ),
        )
    next_url = request.session.pop(NEXT_KEY, "") or reverse("admin:index")
    login(request, user, backend="accounts.backends.RoleAwareModelBackend")
    audit_log_record(
        action=AuditLog.Action.LOGIN,
        resource_type="user",
        resource_id=user.pk,
        actor=user,
        metadata={"channel": "admin", "provider": chosen.key},
        response_status=302,
    )
    return HttpResponseRedirect(next_url)
