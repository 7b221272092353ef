from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Self

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apikeys import keys
from config.models import UUIDTimestampedModel
from config.soft_delete import SoftDeleteManager, SoftDeleteModel, SoftDeleteQuerySet

# last_used_at is written at most this often per key, so a steady stream of requests does not
# turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class APIKeyQuerySet(SoftDeleteQuerySet):
    def usable(self) -> Self:
        """Live, unexpired keys of live, active owners."""
        now = timezone.now()
        return self.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
            deleted_at__isnull=True,
            user__is_active=True,
            user__deleted_at__isnull=True,
        )

    def for_user(self, user: models.Model) -> Self:
        return self.filter(user=user)


class APIKeyManager(SoftDeleteManager.from_queryset(APIKeyQuerySet)):
    def create_key(
        self,
        *,
        user: models.Model,
        name: str,
        scopes: Iterable[str],
        rate_limit_tier: str = "free",
        expires_at: datetime | None = None,
    ) -> tuple[APIKey, str]:
        """Create a key; return it with the raw key, which exists only in this return value."""
        generated = keys.generate()
        api_key = self.create(
            user=user,
            name=name,
            key_hash=generated.key_hash,
            key_prefix=generated.prefix,
            key_hint=generated.hint,
            scopes=list(dict.fromkeys(scopes)),
            rate_limit_tier=rate_limit_tier,
            expires_at=expires_at,
        )
        return api_key, generated.raw


class APIKey(UUIDTimestampedModel, SoftDeleteModel):
    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Write"
        ADMIN = "admin", "Admin"

    class Tier(models.TextChoices):
        FREE = "free", "Free"
        PRO = "pro", "Pro"
        ENTERPRISE = "enterprise", "Enterprise"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_keys",
        db_index=False,  # indexed below under the seed's name
        db_comment="Owner; the key goes with a hard-deleted user",
    )
    name = models.CharField(max_length=255)
    key_hash = models.CharField(max_length=64, db_comment="SHA-256 hex of the raw key")
    key_prefix = models.CharField(max_length=12, db_comment="Prefix part of the key, e.g. sk_live")
    key_hint = models.CharField(max_length=40, db_comment="Non-secret display hint, e.g. sk_live_AbCd…xYz9")
    scopes = models.JSONField(default=list, blank=True)
    rate_limit_tier = models.CharField(max_length=20, choices=Tier.choices, default=Tier.FREE)
    expires_at = models.DateTimeField(null=True, blank=True, db_comment="NULL = never expires")
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = APIKeyManager()
    all_objects = models.Manager.from_queryset(APIKeyQuerySet)()

    class Meta:
        db_table = "api_keys"
        verbose_name = "API key"
        ordering = ["-created_at"]
        constraints = [
            # One uniqueness for key_hash (the seed had a unique index and a unique constraint).
            # Serves authentication: one indexed lookup per request.
            models.UniqueConstraint(fields=["key_hash"], name="apikeys_key_hash_unique"),
            models.CheckConstraint(
                condition=Q(rate_limit_tier__in=["free", "pro", "enterprise"]),
                name="apikeys_tier_valid",
            ),
        ]
        indexes = [
            # Seed ix_api_keys_user_id: a user's keys (list, cascade on user soft delete).
            models.Index(fields=["user"], name="ix_api_keys_user_id"),
            # Seed ix_api_keys_key_prefix: keys by environment prefix (sk_live vs sk_test).
            models.Index(fields=["key_prefix"], name="ix_api_keys_key_prefix"),
            # Seed ix_api_keys_expires_at: expiring/expired key sweeps and the state filter.
            models.Index(fields=["expires_at"], name="ix_api_keys_expires_at"),
            # Seed ix_api_keys_user_id_deleted_at: a user's live keys (the list endpoint).
            models.Index(fields=["user", "deleted_at"], name="ix_api_keys_user_deleted"),
            # Seed ix_api_keys_key_hash_deleted_at: live-key lookup by hash.
            models.Index(fields=["key_hash", "deleted_at"], name="ix_api_keys_hash_deleted"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_hint})"

    def __repr__(self) -> str:
        return (
            f"APIKey(id={self.id}, user_id={self.user_id}, name={self.name!r}, "
            f"prefix={self.key_prefix!r}, active={self.is_valid})"
        )

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])

    def has_any_scope(self, scopes: Iterable[str]) -> bool:
        return any(self.has_scope(s) for s in scopes)

    def has_all_scopes(self, scopes: Iterable[str]) -> bool:
        return all(self.has_scope(s) for s in scopes)

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_valid(self) -> bool:
        """Usable for authentication right now: not revoked and not expired."""
        return self.deleted_at is None and not self.is_expired

    @property
    def is_active(self) -> bool:
        return self.is_valid

    @property
    def state(self) -> str:
        if self.deleted_at is not None:
            return "revoked"
        if self.is_expired:
            return "expired"
        return "active"

    def update_last_used(self, *, now: datetime | None = None) -> bool:
        """Record use, at most once per minute per key, across all workers.

        The UPDATE is conditional on the stored value being older than a minute, so of many
        concurrent requests only one writes; the rest match no row. Returns True if it wrote.
        """
        now = now or timezone.now()
        if self.last_used_at is not None and now - self.last_used_at < LAST_USED_RESOLUTION:
            return False
        written = (
            APIKey.all_objects.filter(pk=self.pk)
            .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION))
            .update(last_used_at=now)
        )
        self.last_used_at = now
        return bool(written)
