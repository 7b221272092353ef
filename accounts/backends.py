"""Authentication backend: email login, and admin permissions granted by platform roles.

Django's ModelBackend reads group permissions through the ``groups`` relation of
PermissionsMixin. Our ``User.groups`` is the seed's JSON list of directory groups instead, so
"group permissions" here are the permissions the user's roles grant (accounts.roles).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet

from accounts.roles import ROLE_ADMIN_PERMISSIONS


class RoleAwareModelBackend(ModelBackend):
    def user_can_authenticate(self, user: Any) -> bool:
        return super().user_can_authenticate(user) and getattr(user, "deleted_at", None) is None

    def _get_group_permissions(self, user_obj: Any) -> QuerySet[Permission]:
        condition = Q()
        granted = False
        for role in user_obj.roles or []:
            for app_label, prefix in ROLE_ADMIN_PERMISSIONS.get(role, ()):
                granted = True
                clause = Q(content_type__app_label=app_label)
                if prefix != "*":
                    clause &= Q(codename__startswith=prefix)
                condition |= clause
        if not granted:
            return Permission.objects.none()
        return Permission.objects.filter(condition)
