"""Platform roles (the original RBAC's five) and the Django admin permissions each grants."""

from __future__ import annotations

from django.db import models

# The apps whose admin pages roles open up.
PLATFORM_APPS = ("accounts", "apikeys", "agent_sessions", "audit")


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    USER = "user", "User"
    DEVELOPER = "developer", "Developer"
    ADMIN = "admin", "Admin"
    SUPER_ADMIN = "super_admin", "Super admin"


# Roles that make a user a platform administrator (API admin endpoints, all admin pages).
ADMIN_ROLES = frozenset({Role.ADMIN, Role.SUPER_ADMIN})

# What each role grants in the Django admin, as (app_label, codename prefix or "*").
# Explicit per-user permissions (user_permissions) add to these.
ROLE_ADMIN_PERMISSIONS: dict[str, tuple[tuple[str, str], ...]] = {
    Role.SUPER_ADMIN: tuple((app, "*") for app in PLATFORM_APPS),
    Role.ADMIN: tuple((app, "*") for app in PLATFORM_APPS),
    Role.DEVELOPER: (*((app, "view_") for app in PLATFORM_APPS), ("apikeys", "*")),
    Role.VIEWER: tuple((app, "view_") for app in PLATFORM_APPS),
    Role.USER: (),
}
