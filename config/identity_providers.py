"""Which identity providers this deployment trusts, read from the environment.

Three kinds, each optional, any together: Azure AD (Entra ID), AWS Cognito, and one generic
OpenID Connect issuer. settings.py builds ``IDENTITY_PROVIDERS`` with ``identity_providers_from``;
a half-given or malformed provider stops startup with ImproperlyConfigured naming the variable.
The apps read ``settings.IDENTITY_PROVIDERS`` (this module knows no app).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

AZURE_AD = "azure_ad"
AWS_COGNITO = "aws_cognito"
OIDC = "oidc"

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_POOL_ID = re.compile(r"(?P<region>[a-z]{2}(-[a-z]+)+-\d{1,2})_[0-9A-Za-z]+")
_CLIENT_ID = re.compile(r"[\w.:/@+-]{1,255}")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class IdentityProvider:
    """One trusted issuer: how its tokens are checked and how its users sign into the admin."""

    # The users' ``provider`` value and the admin sign-in URL's segment: azure_ad, aws_cognito, oidc.
    key: str
    label: str
    # Exactly the ``iss`` its tokens carry; its discovery document is under it.
    issuer: str
    client_id: str
    # Accepted ``aud`` values of API tokens (Cognito access tokens carry ``client_id`` instead).
    audiences: tuple[str, ...]
    # Azure AD only: the ``tid`` every token must carry.
    tenant_id: str = ""
    client_secret: str = field(default="", repr=False)

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def offers_sign_in(self) -> bool:
        """Azure AD redeems a code from a web app only with a client secret (a confidential
        client); Cognito app clients and generic issuers may be public clients (PKCE alone)."""
        return bool(self.client_secret) if self.key == AZURE_AD else True


def _read(environ: Mapping[str, str], name: str) -> str:
    return (environ.get(name) or "").strip()


def _issuer(name: str, value: str) -> str:
    """An https URL (http only on the loopback, for development and tests), no trailing slash."""
    parts = urllib.parse.urlsplit(value)
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)
    if not secure or not parts.hostname or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not an issuer URL (https://..., or http:// on the loopback only)"
        )
    return value.rstrip("/")


def _require(environ: Mapping[str, str], prefix: str, given: list[str], name: str) -> str:
    value = _read(environ, name)
    if not value:
        raise ImproperlyConfigured(f"{name} is required when {', '.join(given)} is set ({prefix}* is half-given)")
    return value


def _matching(name: str, value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise ImproperlyConfigured(f"{name}={value!r} is not {what}")
    return value


def _given(environ: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if _read(environ, name)]


AZURE_VARIABLES = (
    "AZURE_AD_TENANT_ID",
    "AZURE_AD_CLIENT_ID",
    "AZURE_AD_AUDIENCE",
    "AZURE_AD_CLIENT_SECRET",
    "AZURE_AD_ISSUER",
)
COGNITO_VARIABLES = (
    "COGNITO_REGION",
    "COGNITO_USER_POOL_ID",
    "COGNITO_CLIENT_ID",
    "COGNITO_CLIENT_SECRET",
    "COGNITO_ISSUER",
)
OIDC_VARIABLES = ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_AUDIENCE", "OIDC_LABEL")


def _azure(environ: Mapping[str, str]) -> IdentityProvider | None:
    given = _given(environ, AZURE_VARIABLES)
    if not given:
        return None
    tenant = _require(environ, "AZURE_AD_", given, "AZURE_AD_TENANT_ID")
    _matching("AZURE_AD_TENANT_ID", tenant, _GUID, "a tenant id (a GUID, as the tokens' tid claim has it)")
    client_id = _require(environ, "AZURE_AD_", given, "AZURE_AD_CLIENT_ID")
    _matching("AZURE_AD_CLIENT_ID", client_id, _GUID, "an application (client) id (a GUID)")
    audience = _read(environ, "AZURE_AD_AUDIENCE")
    if audience:
        _matching("AZURE_AD_AUDIENCE", audience, _CLIENT_ID, "an audience (the client id or an App ID URI)")
    override = _read(environ, "AZURE_AD_ISSUER")
    issuer = (
        _issuer("AZURE_AD_ISSUER", override) if override else f"https://login.microsoftonline.com/{tenant.lower()}/v2.0"
    )
    # v2 access tokens carry the client id; v1 ones and some SDKs the App ID URI api://<client id>.
    audiences = tuple(dict.fromkeys(a for a in (audience, client_id, f"api://{client_id}") if a))
    return IdentityProvider(
        key=AZURE_AD,
        label="Azure AD",
        issuer=issuer,
        client_id=client_id,
        audiences=audiences,
        tenant_id=tenant.lower(),
        client_secret=_read(environ, "AZURE_AD_CLIENT_SECRET"),
    )


def _cognito(environ: Mapping[str, str]) -> IdentityProvider | None:
    given = _given(environ, COGNITO_VARIABLES)
    if not given:
        return None
    client_id = _require(environ, "COGNITO_", given, "COGNITO_CLIENT_ID")
    _matching("COGNITO_CLIENT_ID", client_id, re.compile(r"[\w+]{1,128}"), "an app client id")
    override = _read(environ, "COGNITO_ISSUER")
    region = _read(environ, "COGNITO_REGION")
    pool = _read(environ, "COGNITO_USER_POOL_ID")
    if override:
        issuer = _issuer("COGNITO_ISSUER", override)
    else:
        region = _require(environ, "COGNITO_", given, "COGNITO_REGION")
        pool = _require(environ, "COGNITO_", given, "COGNITO_USER_POOL_ID")
    if region:
        _matching("COGNITO_REGION", region, _REGION, "an AWS region like eu-west-1")
    if pool:
        match = _POOL_ID.fullmatch(pool)
        if match is None or (region and match["region"] != region):
            raise ImproperlyConfigured(
                f"COGNITO_USER_POOL_ID={pool!r} is not a user pool id of COGNITO_REGION (like eu-west-1_AbC123)"
            )
    if not override:
        issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool}"
    return IdentityProvider(
        key=AWS_COGNITO,
        label="Cognito",
        issuer=issuer,
        client_id=client_id,
        audiences=(client_id,),
        client_secret=_read(environ, "COGNITO_CLIENT_SECRET"),
    )


def _generic(environ: Mapping[str, str]) -> IdentityProvider | None:
    given = _given(environ, OIDC_VARIABLES)
    if not given:
        return None
    issuer = _issuer("OIDC_ISSUER", _require(environ, "OIDC_", given, "OIDC_ISSUER"))
    client_id = _require(environ, "OIDC_", given, "OIDC_CLIENT_ID")
    _matching("OIDC_CLIENT_ID", client_id, _CLIENT_ID, "a client id")
    audience = _read(environ, "OIDC_AUDIENCE")
    if audience:
        _matching("OIDC_AUDIENCE", audience, _CLIENT_ID, "an audience")
    label = _read(environ, "OIDC_LABEL") or "OpenID Connect"
    if len(label) > 40:
        raise ImproperlyConfigured(f"OIDC_LABEL={label!r} is longer than 40 characters")
    return IdentityProvider(
        key=OIDC,
        label=label,
        issuer=issuer,
        client_id=client_id,
        audiences=tuple(dict.fromkeys(a for a in (audience, client_id) if a)),
        client_secret=_read(environ, "OIDC_CLIENT_SECRET"),
    )


def identity_providers_from(environ: Mapping[str, str]) -> tuple[IdentityProvider, ...]:
    """The configured providers (none is fine); ImproperlyConfigured naming a bad variable."""
    providers = tuple(p for p in (_azure(environ), _cognito(environ), _generic(environ)) if p is not None)
    issuers = [p.issuer for p in providers]
    for provider in providers:
        if issuers.count(provider.issuer) > 1:
            raise ImproperlyConfigured(
                f"two identity providers share the issuer {provider.issuer!r} (AZURE_AD_ISSUER, COGNITO_ISSUER, "
                "OIDC_ISSUER): a token's iss must name exactly one"
            )
    return providers
