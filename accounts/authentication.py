from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from accounts.models import User


def acting_user(request: HttpRequest | Request) -> User:
    """The signed-in user of a request that authentication has let through (API or admin): the
    ``actor`` every service call names. Anonymous never gets this far; if it did, it is refused."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied
    return user


class StaffSessionAuthentication(SessionAuthentication):
    """Staff logged into the admin may use the browsable API with their session (CSRF enforced)."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        if not user.is_staff or getattr(user, "deleted_at", None) is not None:
            return None
        return result
