"""How the OpenAPI schema describes the staff session and identity-provider tokens (registered by
AccountsConfig.ready)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.StaffSessionAuthentication"
    name = "StaffSession"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "Admin staff session (browsable API)",
        }


class IdentityTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.oidc.authentication.IdentityTokenAuthentication"
    name = "BearerToken"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Authorization: Bearer <token of a configured identity provider (Azure AD, Cognito, OIDC)>",
        }
