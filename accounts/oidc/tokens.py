"""Validating an identity provider's JWT (PyJWT): the API's bearer tokens and the ID tokens of
the admin's sign-in go through the same checks.

The issuer picks the provider (``iss`` exactly as configured), and only that provider's
published keys can verify the token: a ``kid`` of another issuer is an unknown key. Only RS256
and ES256, and only those the provider publishes; the token's ``alg`` must be its key's.
``exp``, ``nbf`` and ``iat`` are checked with LEEWAY seconds of clock skew. The audience rule
is per provider: Azure AD ``aud`` (and ``tid`` the configured tenant); Cognito ID tokens ``aud``
with ``token_use: id``, Cognito access tokens ``client_id`` with ``token_use: access``; any
other issuer ``aud``.

A refusal is a ``TokenRejected`` whose ``code`` names the check that failed; its message never
repeats the token.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings

from accounts.oidc import keys
from config.identity_providers import AWS_COGNITO, AZURE_AD, IdentityProvider

LEEWAY = 60
MAX_TOKEN_LENGTH = 16_384
# header.payload.signature, base64url; an `alg: none` token has an empty signature.
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")


def looks_like_jwt(value: str) -> bool:
    """A bearer value to validate as a token rather than as an API key (``sk_...`` stays a key)."""
    return not value.startswith("sk_") and len(value) <= MAX_TOKEN_LENGTH and bool(_JWT_SHAPE.fullmatch(value))


class TokenRejected(Exception):
    def __init__(self, code: str, message: str, *, provider: IdentityProvider | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.provider = provider


@dataclass(frozen=True)
class VerifiedToken:
    provider: IdentityProvider
    claims: Mapping[str, Any]


def provider_for_issuer(issuer: object) -> IdentityProvider | None:
    providers: tuple[IdentityProvider, ...] = settings.IDENTITY_PROVIDERS
    return next((p for p in providers if p.issuer == issuer), None)


def verify(raw: str) -> VerifiedToken:
    """The token's provider and claims, or TokenRejected; keys.ProviderUnavailable when the
    provider's keys cannot be had at all."""
    header, unverified = _peek(raw)
    alg = header.get("alg")
    if alg not in keys.ALGORITHMS:
        raise TokenRejected(
            "token_algorithm_not_allowed", "The token's signing algorithm is not accepted (RS256 or ES256 only)."
        )
    provider = provider_for_issuer(unverified.get("iss"))
    if provider is None:
        raise TokenRejected("token_invalid_issuer", "The token's issuer (iss) is not a configured identity provider.")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenRejected("token_malformed", "The token's key id (kid) is not a string.", provider=provider)
    key_set = keys.key_set_for(provider, kid)
    if alg not in key_set.algorithms:
        raise TokenRejected(
            "token_algorithm_not_allowed",
            f"{provider.label} does not publish the token's signing algorithm.",
            provider=provider,
        )
    key = key_set.key_for(kid)
    if key is None:
        raise TokenRejected(
            "token_unknown_key",
            f"The token's signing key (kid) is not one of {provider.label}'s keys.",
            provider=provider,
        )
    if key.algorithm_name != alg:
        raise TokenRejected(
            "token_algorithm_not_allowed", "The token's algorithm is not its signing key's.", provider=provider
        )
    claims = _decode(raw, key, alg, provider, unverified)
    _check_audience(provider, claims)
    return VerifiedToken(provider=provider, claims=claims)


def _segment(text: str) -> dict[str, Any]:
    value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _peek(raw: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims, unverified: which provider and key to check the token with.
    (PyJWT's own parse validates every character in Python; the verified decode below does
    that once, so this one stays cheap; measured in the token benchmark.)"""
    try:
        header, payload, _ = raw.split(".")
        return _segment(header), _segment(payload)
    except (ValueError, UnicodeDecodeError):  # binascii.Error and JSONDecodeError are ValueErrors
        raise TokenRejected("token_malformed", "The bearer token is not a well-formed JWT.") from None


def _decode(
    raw: str, key: jwt.PyJWK, alg: str, provider: IdentityProvider, unverified: Mapping[str, Any]
) -> dict[str, Any]:
    def reject(code: str, message: str) -> TokenRejected:
        return TokenRejected(code, message, provider=provider)

    try:
        return jwt.decode(
            raw,
            key=key,
            algorithms=[alg],
            issuer=provider.issuer,
            leeway=LEEWAY,
            options={"require": ["exp", "iat", "iss"], "verify_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise reject("token_invalid_signature", "The token's signature does not verify.") from None
    except jwt.ExpiredSignatureError:
        raise reject("token_expired", "The token has expired.") from None
    except jwt.ImmatureSignatureError:
        nbf = unverified.get("nbf")
        if isinstance(nbf, int | float) and nbf > time.time() + LEEWAY:
            raise reject("token_not_yet_valid", "The token is not valid yet (nbf).") from None
        raise reject("token_issued_in_future", "The token is issued in the future (iat).") from None
    except jwt.MissingRequiredClaimError as exc:
        raise reject("token_missing_claim", f"The token has no {exc.claim} claim.") from None
    except jwt.InvalidIssuedAtError:
        raise reject("token_malformed", "The token's iat claim is not a number.") from None
    except jwt.InvalidIssuerError:
        raise reject("token_invalid_issuer", "The token's issuer (iss) does not match.") from None
    except jwt.InvalidAlgorithmError:
        raise reject("token_algorithm_not_allowed", "The token's signing algorithm is not accepted.") from None
    except jwt.PyJWTError:
        raise reject("token_malformed", "The token's claims are malformed.") from None


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def _check_audience(provider: IdentityProvider, claims: Mapping[str, Any]) -> None:
    def reject(code: str, message: str) -> TokenRejected:
        return TokenRejected(code, message, provider=provider)

    if provider.key == AWS_COGNITO:
        use = claims.get("token_use")
        if use == "id":
            if provider.client_id not in _audiences(claims):
                raise reject("token_invalid_audience", "The ID token is for another app client (aud).")
        elif use == "access":
            # Cognito access tokens have no aud; the app client is in client_id.
            if claims.get("client_id") != provider.client_id:
                raise reject("token_invalid_client_id", "The access token is for another app client (client_id).")
        else:
            raise reject("token_invalid_token_use", "A Cognito token must be an ID or access token (token_use).")
        return
    if not set(_audiences(claims)) & set(provider.audiences):
        raise reject("token_invalid_audience", "The token is for another audience (aud).")
    if provider.key == AZURE_AD:
        tid = claims.get("tid")
        if not isinstance(tid, str) or tid.lower() != provider.tenant_id:
            raise reject("token_invalid_tenant", "The token is from another Azure AD tenant (tid).")
