"""The platform's users: local accounts and users of an identity provider (Azure AD, Cognito,
another OpenID Connect issuer)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Self, cast

from django.apps import apps
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.postgres.indexes import GinIndex
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.roles import ADMIN_ROLES, Role
from config.db.models import UUIDTimestampedModel
from config.db.soft_delete import LIVE, SoftDeleteModel, SoftDeleteQuerySet

MAX_GROUP_LENGTH = 100


def clean_roles(values: Iterable[str]) -> list[str]:
    """Known roles, each once, in the order given; ValueError naming an unknown one."""
    cleaned: list[str] = []
    for role in values:
        if role not in Role.values:
            raise ValueError(f"unknown role {role!r}; known roles: {', '.join(Role.values)}")
        if role not in cleaned:
            cleaned.append(role)
    return cleaned


def clean_groups(values: Iterable[str]) -> list[str]:
    """Directory group names, each once, in the order given; ValueError for a bad one."""
    cleaned: list[str] = []
    for group in values:
        if not isinstance(group, str) or not group.strip() or len(group) > MAX_GROUP_LENGTH:
            raise ValueError(f"a group is a non-empty string of at most {MAX_GROUP_LENGTH} characters")
        if group not in cleaned:
            cleaned.append(group)
    return cleaned


# How each JSON list column of User is cleaned: the API, the admin and the seed helpers alike.
LIST_CLEANERS = {"roles": clean_roles, "groups": clean_groups}


class Provider(models.TextChoices):
    LOCAL = "local", "Local"
    AZURE_AD = "azure_ad", "Azure AD"
    AWS_COGNITO = "aws_cognito", "AWS Cognito"
    # Any other OpenID Connect issuer (OIDC_ISSUER); provider_user_id is its `sub`.
    OIDC = "oidc", "OpenID Connect"


class UserQuerySet(SoftDeleteQuerySet):
    def soft_delete_values(self) -> dict[str, Any]:
        return {**super().soft_delete_values(), "is_active": False}

    def soft_delete(self) -> int:
        """Soft-delete and deactivate these users and revoke their API keys, in one transaction.
        No audit row: ``accounts.services.user_soft_delete`` is what the API and admin call."""
        with transaction.atomic():
            live = self.alive()
            APIKey = apps.get_model("apikeys", "APIKey")
            APIKey.objects.filter(user__in=live.values("pk")).revoke()
            return live.update(**self.soft_delete_values())

    soft_delete.alters_data = True  # type: ignore[attr-defined]
    soft_delete.queryset_only = True  # type: ignore[attr-defined]

    def with_email(self, email: str) -> Self:
        """Case-insensitive email match, served by the Lower(email) unique index."""
        return self.alias(email_lower=Lower("email")).filter(email_lower=email.lower())

    def with_role(self, role: str) -> Self:
        return self.filter(roles__contains=[role])

    def in_group(self, group: str) -> Self:
        return self.filter(groups__contains=[group])


_UserManagerBase = BaseUserManager.from_queryset(UserQuerySet)
AllUsersManager = models.Manager.from_queryset(UserQuerySet)


class UserManager(_UserManagerBase):  # type: ignore[valid-type,misc]  # the plugin reads from_queryset on Manager only
    """Default manager: live (not soft-deleted) users, and the factory methods createsuperuser uses."""

    use_in_migrations = True

    def get_queryset(self) -> UserQuerySet:
        return cast(UserQuerySet, super().get_queryset().filter(LIVE))

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get_queryset().with_email(username or "").get()

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        if not email:
            raise ValueError("a user needs an email address")
        fields.setdefault("name", email.split("@")[0])
        user = self.model(email=self.normalize_email(email), **fields)
        if password and not user.is_oauth_user:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.full_clean(exclude=["password", "provider_user_id"])
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        fields.setdefault("roles", [Role.SUPER_ADMIN.value])
        return self.create_user(email, password, **fields)


class User(UUIDTimestampedModel, SoftDeleteModel, AbstractBaseUser, PermissionsMixin):
    Provider = Provider

    email = models.EmailField(max_length=255)
    name = models.CharField(max_length=255)
    # Django's hashers (Argon2 first); an unusable password for OAuth users.
    password = models.CharField("password", max_length=255, db_column="hashed_password")
    provider = models.CharField(max_length=50, choices=Provider.choices, default=Provider.LOCAL)
    provider_user_id = models.CharField(
        max_length=255, db_comment="The identity provider's id; the user's own id for local users"
    )
    roles = models.JSONField(default=list, blank=True, db_comment="Platform roles (accounts.roles.Role)")
    # Replaces PermissionsMixin's `groups` relation: the seed's directory groups, a JSON list.
    groups = models.JSONField(default=list, blank=True, db_comment="Directory groups (free-form names)")
    # The seed's flag. ``is_active`` means "usable right now" on every model here: a user who may
    # sign in and hold working keys; a key that authenticates (APIKey.is_active); a session that
    # takes messages (Session.is_active). Here it is stored, switched by staff, and cleared by a
    # soft delete (the services keep it False while deleted_at is set).
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log into the admin site.")

    objects: ClassVar[UserManager] = UserManager()
    all_objects: ClassVar[AllUsersManager] = AllUsersManager()  # soft-deleted users too

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        db_table = "users"
        ordering = ["-created_at"]
        constraints = [
            # Replaces the seed's ix_users_email + users_email_key (one uniqueness, twice), now
            # case-insensitive and among live users only, so a deleted user's email can return.
            # Serves login and the duplicate-email check.
            models.UniqueConstraint(Lower("email"), condition=LIVE, name="users_email_live_uniq"),
            # Seed ix_users_provider_provider_user_id, made unique among live users.
            # Serves the OAuth login lookup (provider, provider's user id).
            models.UniqueConstraint(
                fields=["provider", "provider_user_id"],
                condition=LIVE,
                name="users_provider_uid_live_uniq",
            ),
            models.CheckConstraint(condition=Q(provider__in=Provider.values), name="users_provider_valid"),
        ]
        indexes = [
            # Seed ix_users_provider: the admin's and API's provider filter.
            models.Index(fields=["provider"], name="ix_users_provider"),
            # Seed ix_users_provider_user_id: lookups by the provider's id alone.
            models.Index(fields=["provider_user_id"], name="ix_users_provider_user_id"),
            # Seed ix_users_is_active: the is_active filter.
            models.Index(fields=["is_active"], name="ix_users_is_active"),
            # Seed ix_users_provider_provider_user_id (also covered by the unique constraint).
            models.Index(fields=["provider", "provider_user_id"], name="ix_users_provider_uid"),
            # Seed ix_users_email_deleted_at: exact-email lookups that include deleted users.
            models.Index(fields=["email", "deleted_at"], name="ix_users_email_deleted_at"),
            # Seed ix_users_is_active_deleted_at: "active, live users" listings.
            models.Index(fields=["is_active", "deleted_at"], name="ix_users_active_deleted"),
            # New: containment queries, roles @> '["admin"]' (the role filter).
            GinIndex(fields=["roles"], opclasses=["jsonb_path_ops"], name="ix_users_roles_gin"),
            # New: containment queries, groups @> '["eng"]' (the group filter).
            GinIndex(fields=["groups"], opclasses=["jsonb_path_ops"], name="ix_users_groups_gin"),
        ]

    def __str__(self) -> str:
        return self.email

    def __repr__(self) -> str:
        return (
            f"User(id={self.id}, email={self.email!r}, name={self.name!r}, "
            f"provider={self.provider!r}, is_active={self.is_active})"
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.provider_user_id:
            # Local users have no external id; their own id keeps (provider, id) unique.
            self.provider_user_id = str(self.id)
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "provider_user_id"}
        if self.is_oauth_user and self.has_usable_password():
            self.set_unusable_password()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "password"}
        super().save(*args, **kwargs)

    # --- identity ---

    @property
    def is_oauth_user(self) -> bool:
        return self.provider != self.Provider.LOCAL

    @property
    def is_platform_admin(self) -> bool:
        """May use the admin endpoints (with an admin-scoped key) and see everyone's data."""
        return bool(self.is_superuser or ADMIN_ROLES.intersection(self.roles or []))

    def set_password(self, raw_password: str | None) -> None:
        if raw_password is not None and self.is_oauth_user:
            raise ValueError("OAuth users authenticate with their provider and have no password")
        super().set_password(raw_password)

    # --- the seed's helpers ---------------------------------------------------------------------
    # They change one user and persist at once, but write no audit row: the API, the admin and
    # the commands go through accounts.services, which do. Their rules are the services' rules
    # (the same cleaners, the same row lock).

    def has_role(self, role: str) -> bool:
        return role in (self.roles or [])

    def has_any_role(self, roles: Iterable[str]) -> bool:
        return any(self.has_role(r) for r in roles)

    def has_all_roles(self, roles: Iterable[str]) -> bool:
        return all(self.has_role(r) for r in roles)

    def is_in_group(self, group: str) -> bool:
        return group in (self.groups or [])

    def is_in_any_group(self, groups: Iterable[str]) -> bool:
        return any(self.is_in_group(g) for g in groups)

    def add_role(self, role: str) -> None:
        """Add a role and save (seed helper: no audit row; ValueError for an unknown role)."""
        self._edit_list("roles", lambda roles: [*roles, role])

    def remove_role(self, role: str) -> None:
        """Remove a role and save (seed helper: no audit row)."""
        self._edit_list("roles", lambda roles: [r for r in roles if r != role])

    def add_group(self, group: str) -> None:
        """Add a directory group and save (seed helper: no audit row)."""
        self._edit_list("groups", lambda groups: [*groups, group])

    def remove_group(self, group: str) -> None:
        """Remove a directory group and save (seed helper: no audit row)."""
        self._edit_list("groups", lambda groups: [g for g in groups if g != group])

    def _edit_list(self, field: str, edit: Any) -> None:
        """Change a JSON list column and persist it; an unsaved user just changes in memory.

        The original mutated the list in place and SQLAlchemy never saw the change. Here the row
        is locked, edited from its stored value and saved, as accounts.services.user_update does,
        so two concurrent add_role() calls both land.
        """
        clean = LIST_CLEANERS[field]
        if self._state.adding:
            setattr(self, field, clean(edit(list(getattr(self, field) or []))))
            return
        with transaction.atomic():
            stored = User.all_objects.select_for_update().only(field).get(pk=self.pk)
            value = clean(edit(list(getattr(stored, field) or [])))
            setattr(self, field, value)
            User.all_objects.filter(pk=self.pk).update(**{field: value, "updated_at": timezone.now()})

    def activate(self) -> None:
        """Set is_active and save (seed helper: no audit row)."""
        self._set_active(True)

    def deactivate(self) -> None:
        """Clear is_active and save (seed helper: no audit row)."""
        self._set_active(False)

    def _set_active(self, active: bool) -> None:
        self.is_active = active
        if not self._state.adding:
            self.save(update_fields=["is_active", "updated_at"])

    def soft_delete(self) -> None:
        """Soft-delete, deactivate, and revoke every API key of this user, in one transaction.
        Sessions stay, for the record. Seed helper: no audit row (the service writes one)."""
        if self.deleted_at is not None:
            return
        with transaction.atomic():
            APIKey = apps.get_model("apikeys", "APIKey")
            APIKey.objects.filter(user=self).revoke()
            self.deleted_at = timezone.now()
            self.is_active = False
            self.save(update_fields=["deleted_at", "is_active", "updated_at"])

    def restore(self) -> None:
        """Undo a soft delete and reactivate; revoked API keys stay revoked. Seed helper: no audit
        row (the service writes one)."""
        if self.deleted_at is None:
            return
        self.deleted_at = None
        self.is_active = True
        self.save(update_fields=["deleted_at", "is_active", "updated_at"])
