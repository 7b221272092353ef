from __future__ import annotations

from typing import Any

from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request


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
