"""What a credential may do through the API: scopes.

``read`` for safe methods, ``write`` for the rest, ``admin`` (held by a platform admin) for the
admin endpoints and for seeing everyone's data. A request's scopes are its credential's: an API
key's own (``request.auth.scopes``), or, for a staff member in the browsable API, what their user
may hold (``scopes_for``). The user is asked only ``is_platform_admin``.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


class Scope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    ADMIN = "admin", "Admin"


def scopes_for(user: Any) -> frozenset[str]:
    """The scopes this user may hold (on a key) and acts with (in a staff session): admin only
    for a platform admin."""
    scopes = {Scope.READ.value, Scope.WRITE.value}
    if getattr(user, "is_platform_admin", False):
        scopes.add(Scope.ADMIN.value)
    return frozenset(scopes)


def granted_scopes(request: Request) -> frozenset[str]:
    """Scopes of the request's credential (none for an anonymous request)."""
    user = request.user
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    scopes = getattr(request.auth, "scopes", None)
    if scopes is not None:
        return frozenset(scopes)
    return scopes_for(user)


def is_admin_request(request: Request) -> bool:
    """An admin-scoped credential whose user is a platform admin (role admin/super_admin or superuser)."""
    return Scope.ADMIN in granted_scopes(request) and bool(getattr(request.user, "is_platform_admin", False))


def method_scope(method: str) -> str:
    return Scope.READ if method in SAFE_METHODS else Scope.WRITE


class HasScopeForMethod(BasePermission):
    message = "This API key lacks the scope this method needs (read for GET, write for changes)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return method_scope(request.method or "GET") in granted_scopes(request)


class IsPlatformAdmin(HasScopeForMethod):
    message = "This endpoint needs an admin-scoped key of an admin user."

    def has_permission(self, request: Request, view: Any) -> bool:
        return super().has_permission(request, view) and is_admin_request(request)
