"""What a validated token says about its user, per provider.

The user is the pair (provider, provider_user_id): Azure AD's ``oid`` (the tenant is checked by
``tokens``), Cognito's and any other issuer's ``sub``. Never the email: some providers let a
user change it. The other fields are what the provider says now; ``None`` means this token
does not say (a Cognito access token has no email or name), and then the stored value stays.

- email: ``email`` (Azure AD: else ``preferred_username`` / ``upn`` when it is an address)
- name: ``name``, else given and family name, else (Cognito) the user name
- groups: Azure AD ``groups``; Cognito ``cognito:groups``; others ``groups``
- roles: Azure AD app ``roles``; Cognito groups; others ``roles`` and ``groups``; each name
  mapped by ``accounts.roles.PROVIDER_ROLE_NAMES``
- is_staff: any of ``accounts.roles.STAFF_ROLES``
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.models import MAX_GROUP_LENGTH, User
from accounts.oidc.tokens import TokenRejected, VerifiedToken
from accounts.roles import STAFF_ROLES, roles_from_provider_names
from config.identity_providers import AWS_COGNITO, AZURE_AD

PROVIDER_OF = {AZURE_AD: User.Provider.AZURE_AD, AWS_COGNITO: User.Provider.AWS_COGNITO}


class IdentityRefused(Exception):
    """A valid token whose user may not act: unknown (no provisioning), deleted, inactive, or
    an email another account holds."""

    def __init__(self, code: str, message: str, *, user: User | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.user = user


@dataclass(frozen=True)
class ProviderIdentity:
    provider: str  # User.Provider
    subject: str  # provider_user_id
    email: str | None
    name: str | None
    roles: tuple[str, ...]
    groups: tuple[str, ...] | None  # None: this token does not carry the groups

    @property
    def is_staff(self) -> bool:
        return bool(STAFF_ROLES.intersection(self.roles))

    def changes_for(self, user: User) -> dict[str, Any]:
        """The fields whose stored values differ from what the provider says now."""
        changes: dict[str, Any] = {}
        if self.email is not None and self.email.lower() != user.email.lower():
            changes["email"] = self.email
        if self.name is not None and self.name != user.name:
            changes["name"] = self.name
        if set(self.roles) != set(user.roles or []):
            changes["roles"] = list(self.roles)
        if self.groups is not None and set(self.groups) != set(user.groups or []):
            changes["groups"] = list(self.groups)
        if self.is_staff != user.is_staff:
            changes["is_staff"] = self.is_staff
        return changes


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [v.strip() for v in value if isinstance(v, str) and v.strip() and len(v.strip()) <= MAX_GROUP_LENGTH]


def _email(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 255:
        return None
    return _valid_email(value)


@functools.lru_cache(maxsize=4096)
def _valid_email(value: str) -> str | None:
    # Every request of a user carries the same address: validate it once per process.
    try:
        validate_email(value)
    except ValidationError:
        return None
    return User.objects.normalize_email(value.strip())


def _name(claims: Mapping[str, Any], *fallbacks: str) -> str | None:
    for candidate in (
        claims.get("name"),
        " ".join(p for p in (claims.get("given_name"), claims.get("family_name")) if isinstance(p, str)),
        *(claims.get(f) for f in fallbacks),
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()[:255]
    return None


def identity_of(token: VerifiedToken) -> ProviderIdentity:
    claims = token.claims
    key = token.provider.key
    subject = claims.get("oid") if key == AZURE_AD else claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        claim = "oid" if key == AZURE_AD else "sub"
        raise TokenRejected("token_missing_claim", f"The token has no {claim} claim.", provider=token.provider)
    groups: list[str] | None
    if key == AZURE_AD:
        email = _email(claims.get("email")) or _email(claims.get("preferred_username")) or _email(claims.get("upn"))
        name = _name(claims)
        roles = roles_from_provider_names(_strings(claims.get("roles")))
        # Past 200 groups Azure AD leaves them out and points at Graph (_claim_names): keep ours.
        overage = isinstance(claims.get("_claim_names"), dict) and "groups" in claims["_claim_names"]
        groups = None if overage else _strings(claims.get("groups"))
    elif key == AWS_COGNITO:
        email = _email(claims.get("email"))
        name = _name(claims, "cognito:username", "username")
        groups = _strings(claims.get("cognito:groups"))
        roles = roles_from_provider_names(groups)
    else:
        email = _email(claims.get("email"))
        name = _name(claims, "preferred_username")
        groups = _strings(claims.get("groups"))
        roles = roles_from_provider_names([*_strings(claims.get("roles")), *groups])
    return ProviderIdentity(
        provider=PROVIDER_OF.get(key, User.Provider.OIDC),
        subject=subject,
        email=email,
        name=name,
        roles=tuple(roles),
        groups=None if groups is None else tuple(dict.fromkeys(groups)),
    )
