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

# Roles that make a user staff (may enter the admin) when an identity provider grants them;
# what each may do there is ROLE_ADMIN_PERMISSIONS. A provider user's is_staff follows this.
STAFF_ROLES = frozenset({Role.SUPER_ADMIN, Role.ADMIN, Role.DEVELOPER, Role.VIEWER})

# Provider group and app-role names that grant a platform role, matched case-insensitively (the
# original's DEFAULT_GROUP_TO_ROLE): Cognito groups, Azure AD app roles, a generic `roles` or
# `groups` claim. Any other name grants nothing (it is still kept as a directory group).
PROVIDER_ROLE_NAMES: dict[str, Role] = {
    **dict.fromkeys(("viewer", "viewers", "agentservice.viewers", "agent-service-viewers"), Role.VIEWER),
    **dict.fromkeys(("user", "users", "agentservice.users", "agent-service-users"), Role.USER),
    **dict.fromkeys(("developer", "developers", "agentservice.developers", "agent-service-developers"), Role.DEVELOPER),
    **dict.fromkeys(("admin", "admins", "agentservice.admins", "agent-service-admins"), Role.ADMIN),
    **dict.fromkeys(
        ("super_admin", "superadmin", "super-admin", "agentservice.superadmins", "agent-service-super-admins"),
        Role.SUPER_ADMIN,
    ),
}


def roles_from_provider_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """The platform roles these provider group / app-role names grant, in Role order."""
    granted = {PROVIDER_ROLE_NAMES.get(name.strip().lower()) for name in names if isinstance(name, str)}
    return [role.value for role in Role if role in granted]
