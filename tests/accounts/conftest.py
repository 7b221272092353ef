"""Real OpenID Connect providers for the identity-provider tests (tests/oidc_provider.py), and
tokens they sign for Azure AD, Cognito and generic-issuer users."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from config.identity_providers import identity_providers_from
from tests.oidc_provider import (
    AZURE_CLIENT_ID,
    AZURE_TENANT,
    COGNITO_CLIENT_ID,
    OIDC_CLIENT_ID,
    MockProvider,
    provider_env,
)


@dataclass
class Providers:
    azure: MockProvider
    cognito: MockProvider
    generic: MockProvider

    def azure_token(self, oid: str | None = None, **claims: Any) -> str:
        """An Azure AD token of user ``oid`` (its app roles in ``roles``)."""
        oid = oid or str(uuid.uuid4())
        base = {"oid": oid, "tid": AZURE_TENANT, "email": f"{oid[:8]}@contoso.example", "name": "Azure User"}
        return self.azure.id_token(f"azure-{oid}", {**base, **claims}, client_id=AZURE_CLIENT_ID)

    def cognito_id_token(self, sub: str | None = None, **claims: Any) -> str:
        sub = sub or str(uuid.uuid4())
        base = {"token_use": "id", "email": f"{sub[:8]}@cognito.example", "cognito:username": f"user-{sub[:8]}"}
        return self.cognito.id_token(sub, {**base, **claims}, client_id=COGNITO_CLIENT_ID)

    def cognito_access_token(self, sub: str | None = None, **claims: Any) -> str:
        """Shaped as Cognito's: token_use access, the app client in client_id, no aud (null), no email."""
        sub = sub or str(uuid.uuid4())
        base = {"token_use": "access", "client_id": COGNITO_CLIENT_ID, "aud": None, "scope": "openid email"}
        return self.cognito.id_token(sub, {**base, **claims}, client_id="cognito-hosted-ui")

    def generic_token(self, sub: str | None = None, **claims: Any) -> str:
        sub = sub or str(uuid.uuid4())
        base = {"email": f"{sub[:8]}@sso.example", "name": "SSO User"}
        return self.generic.id_token(sub, {**base, **claims}, client_id=OIDC_CLIENT_ID)


@pytest.fixture(scope="module")
def provider_servers() -> Iterator[Providers]:
    """Three real providers on loopback ports, for a whole test module (each its own key)."""
    with MockProvider() as azure, MockProvider() as cognito, MockProvider() as generic:
        yield Providers(azure=azure, cognito=cognito, generic=generic)


@pytest.fixture
def providers(provider_servers: Providers, settings: Any) -> Providers:
    """The three configured as Azure AD, Cognito and a generic issuer. Failed authentications
    and token requests are not throttled unless a test says so."""
    settings.IDENTITY_PROVIDERS = identity_providers_from(
        provider_env(azure=provider_servers.azure, cognito=provider_servers.cognito, generic=provider_servers.generic)
    )
    settings.AUTH_FAILURE_RATE = "none"
    settings.ADMIN_LOGIN_RATE = "none"
    settings.OIDC_RATE_LIMIT_TIER = "enterprise"
    return provider_servers
