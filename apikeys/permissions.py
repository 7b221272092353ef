"""Scopes: ``read`` for safe methods, ``write`` for the rest, ``admin`` (with an admin owner)
for the admin endpoints and for seeing everyone's data."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from apikeys.models import APIKey


def granted_scopes(request: Request) -> frozenset[str]:
    """Scopes of the request's credential. A staff admin session counts as read+write(+admin)."""
    user = request.user
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    if isinstance(request.auth, APIKey):
        return frozenset(request.auth.scopes or ())
    scopes = {APIKey.Scope.READ, APIKey.Scope.WRITE}
    if user.is_platform_admin:
        scopes.add(APIKey.Scope.ADMIN)
    return frozenset(scopes)


def is_admin_request(request: Request) -> bool:
    """An admin-scoped credential whose owner is a platform admin (role admin/super_admin or superuser)."""
    return APIKey.Scope.ADMIN in granted_scopes(request) and request.user.is_platform_admin


def method_scope(method: str) -> str:
    return APIKey.Scope.READ if method in SAFE_METHODS else APIKey.Scope.WRITE


class HasScopeForMethod(BasePermission):
    message = "This API key lacks the scope this method needs (read for GET, write for changes)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return method_scope(request.method) in granted_scopes(request)


class IsPlatformAdmin(HasScopeForMethod):
    message = "This endpoint needs an admin-scoped key of an admin user."

    def has_permission(self, request: Request, view: Any) -> bool:
        return super().has_permission(request, view) and is_admin_request(request)
