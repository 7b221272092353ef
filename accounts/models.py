from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Self

from django.apps import apps
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.postgres.indexes import GinIndex
from django.db import connection, models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from psycopg.types.json import Jsonb

from accounts.roles import ADMIN_ROLES, Role
from config.models import UUIDTimestampedModel
from config.soft_delete import SoftDeleteModel, SoftDeleteQuerySet

MAX_GROUP_LENGTH = 100


def validate_role(role: str) -> str:
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}; known roles: {', '.join(Role.values)}")
    return role


def validate_group(group: str) -> str:
    if not isinstance(group, str) or not group.strip() or len(group) > MAX_GROUP_LENGTH:
        raise ValueError(f"a group is a non-empty string of at most {MAX_GROUP_LENGTH} characters")
    return group


class UserQuerySet(SoftDeleteQuerySet):
    def soft_delete_values(self) -> dict[str, Any]:
        return {**super().soft_delete_values(), "is_active": False}

    def delete(self) -> int:  # type: ignore[override]
        """Soft-delete and deactivate these users and revoke their API keys, in one transaction."""
        with transaction.atomic():
            live = self.alive()
            APIKey = apps.get_model("apikeys", "APIKey")
            APIKey.objects.filter(user__in=live.values("pk")).delete()
            return live.update(**self.soft_delete_values())

    delete.alters_data = True
    delete.queryset_only = True

    def with_email(self, email: str) -> Self:
        """Case-insensitive email match, served by the Lower(email) unique index."""
        return self.alias(email_lower=Lower("email")).filter(email_lower=email.lower())

    def with_role(self, role: str) -> Self:
        return self.filter(roles__contains=[role])

    def in_group(self, group: str) -> Self:
        return self.filter(groups__contains=[group])


class UserManager(BaseUserManager.from_queryset(UserQuerySet)):
    """Default manager: live (not soft-deleted) users, and the factory methods createsuperuser uses."""

    use_in_migrations = True

    def get_queryset(self) -> UserQuerySet:
        return super().get_queryset().filter(deleted_at__isnull=True)

    def get_by_natural_key(self, username: str) -> User:
        return self.get_queryset().with_email(username).get()

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


class AllUsersManager(models.Manager.from_queryset(UserQuerySet)):
    """Every user, soft-deleted ones included."""


class User(UUIDTimestampedModel, SoftDeleteModel, AbstractBaseUser, PermissionsMixin):
    class Provider(models.TextChoices):
        LOCAL = "local", "Local"
        AZURE_AD = "azure_ad", "Azure AD"
        AWS_COGNITO = "aws_cognito", "AWS Cognito"

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
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log into the admin site.")

    objects = UserManager()
    all_objects = AllUsersManager()

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
            models.UniqueConstraint(Lower("email"), condition=Q(deleted_at__isnull=True), name="users_email_live_uniq"),
            # Seed ix_users_provider_provider_user_id, made unique among live users.
            # Serves the OAuth login lookup (provider, provider's user id).
            models.UniqueConstraint(
                fields=["provider", "provider_user_id"],
                condition=Q(deleted_at__isnull=True),
                name="users_provider_uid_live_uniq",
            ),
            models.CheckConstraint(
                condition=Q(provider__in=["local", "azure_ad", "aws_cognito"]),
                name="users_provider_valid",
            ),
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
        return self.provider in (self.Provider.AZURE_AD, self.Provider.AWS_COGNITO)

    @property
    def is_platform_admin(self) -> bool:
        """May use the admin endpoints (with an admin-scoped key) and see everyone's data."""
        return bool(self.is_superuser or ADMIN_ROLES.intersection(self.roles or []))

    def set_password(self, raw_password: str | None) -> None:
        if raw_password is not None and self.is_oauth_user:
            raise ValueError("OAuth users authenticate with their provider and have no password")
        super().set_password(raw_password)

    # --- roles and groups (the seed's helpers; changes persist) ---

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
        self._json_list_change("roles", validate_role(role), add=True)

    def remove_role(self, role: str) -> None:
        self._json_list_change("roles", role, add=False)

    def add_group(self, group: str) -> None:
        self._json_list_change("groups", validate_group(group), add=True)

    def remove_group(self, group: str) -> None:
        self._json_list_change("groups", group, add=False)

    def _json_list_change(self, field: str, value: str, *, add: bool) -> None:
        """Add or remove one string in a JSON list column, persisted atomically.

        The original mutated the list in place and SQLAlchemy never saw the change. Here a
        saved user is changed with one UPDATE that edits the stored array itself, so two
        concurrent add_role() calls both land; an unsaved user just changes in memory.
        """
        current = list(getattr(self, field) or [])
        if self._state.adding:
            if add and value not in current:
                current.append(value)
            elif not add:
                current = [v for v in current if v != value]
            setattr(self, field, current)
            return
        column = connection.ops.quote_name(self._meta.get_field(field).column)
        if add:
            expression = f"CASE WHEN {column} @> %s THEN {column} ELSE {column} || %s END"
            params: list[Any] = [Jsonb([value]), Jsonb([value])]
        else:
            expression = f"{column} - %s"
            params = [value]
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE users SET {column} = {expression}, updated_at = %s "  # noqa: S608
                f"WHERE id = %s RETURNING {column}",
                [*params, now, self.pk],
            )
            row = cursor.fetchone()
        if row is None:
            raise User.DoesNotExist(f"user {self.pk} no longer exists")
        # Django's psycopg setup hands raw cursors jsonb as text.
        stored = json.loads(row[0]) if isinstance(row[0], str) else row[0]
        setattr(self, field, stored if isinstance(stored, list) else [])
        self.updated_at = now

    # --- status ---

    def activate(self) -> None:
        self._set_active(True)

    def deactivate(self) -> None:
        self._set_active(False)

    def _set_active(self, active: bool) -> None:
        self.is_active = active
        if not self._state.adding:
            self.save(update_fields=["is_active", "updated_at"])

    def soft_delete(self) -> None:
        """Soft-delete, deactivate, and revoke every API key of this user, in one transaction.

        Sessions stay, for the record.
        """
        if self.deleted_at is not None:
            return
        with transaction.atomic():
            APIKey = apps.get_model("apikeys", "APIKey")
            APIKey.objects.filter(user=self).delete()
            self.deleted_at = timezone.now()
            self.is_active = False
            self.save(update_fields=["deleted_at", "is_active", "updated_at"])

    def restore(self) -> None:
        """Undo a soft delete and reactivate. Revoked API keys stay revoked."""
        if self.deleted_at is None:
            return
        self.deleted_at = None
        self.is_active = True
        self.save(update_fields=["deleted_at", "is_active", "updated_at"])
