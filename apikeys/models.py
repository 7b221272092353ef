"""API keys: what they are (``apikeys.keys`` says what they look like), their states, their owner."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import ClassVar, Self

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from apikeys import keys
from config.api.permissions import Scope
from config.db.models import UUIDTimestampedModel
from config.db.soft_delete import LIVE, SoftDeleteManager, SoftDeleteModel, SoftDeleteQuerySet

# last_used_at is written at most this often per key, so a steady stream of requests does not
# turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Tier(models.TextChoices):
    FREE = "free", "Free"
    PRO = "pro", "Pro"
    ENTERPRISE = "enterprise", "Enterprise"


class State(models.TextChoices):
    """A key is revoked (soft-deleted), else expired (past expires_at), else active."""

    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


# The one definition of each state in the database; APIKey.state is the same rule on one row
# (tests/apikeys/test_api_key_model.py holds the two against each other).
STATE_CONDITIONS: dict[str, Q] = {
    State.ACTIVE: LIVE & (Q(expires_at__isnull=True) | Q(expires_at__gt=Now())),
    State.EXPIRED: LIVE & Q(expires_at__lte=Now()),
    State.REVOKED: ~LIVE,
}


class APIKeyQuerySet(SoftDeleteQuerySet):
    def in_state(self, state: str) -> Self:
        return self.filter(STATE_CONDITIONS[state])

    def usable(self) -> Self:
        """Active keys of live, active owners: the keys that authenticate."""
        return self.in_state(State.ACTIVE).filter(user__is_active=True, user__deleted_at__isnull=True)

    def for_user(self, user: models.Model) -> Self:
        return self.filter(user=user)

    def revoke(self) -> int:
        """Revoke (soft-delete) these keys in one UPDATE; return how many. No audit row: the API
        and admin go through apikeys.services.api_key_revoke, which writes one."""
        return self.soft_delete()

    revoke.alters_data = True  # type: ignore[attr-defined]
    revoke.queryset_only = True  # type: ignore[attr-defined]


_APIKeyManagerBase = SoftDeleteManager.from_queryset(APIKeyQuerySet)
AllAPIKeysManager = models.Manager.from_queryset(APIKeyQuerySet)


class APIKeyManager(_APIKeyManagerBase):  # type: ignore[valid-type,misc]  # the plugin reads from_queryset on Manager only
    def create_key(
        self,
        *,
        user: models.Model,
        name: str,
        scopes: Iterable[str],
        rate_limit_tier: str = Tier.FREE,
        expires_at: datetime | None = None,
    ) -> tuple[APIKey, str]:
        """Create a key; return it with the raw key, which exists only in this return value.
        No audit row and no rules beyond the format: apikeys.services.api_key_create has both."""
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
    Scope = Scope
    Tier = Tier
    State = State

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

    objects: ClassVar[APIKeyManager] = APIKeyManager()
    all_objects: ClassVar[AllAPIKeysManager] = AllAPIKeysManager()  # revoked keys too

    class Meta:
        db_table = "api_keys"
        verbose_name = "API key"
        ordering = ["-created_at"]
        constraints = [
            # One uniqueness for key_hash (the seed had a unique index and a unique constraint).
            # Serves authentication: one indexed lookup per request.
            models.UniqueConstraint(fields=["key_hash"], name="apikeys_key_hash_unique"),
            models.CheckConstraint(condition=Q(rate_limit_tier__in=Tier.values), name="apikeys_tier_valid"),
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
            f"prefix={self.key_prefix!r}, active={self.is_active})"
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
    def state(self) -> str:
        """STATE_CONDITIONS, evaluated on this row."""
        if self.deleted_at is not None:
            return State.REVOKED
        if self.is_expired:
            return State.EXPIRED
        return State.ACTIVE

    @property
    def is_active(self) -> bool:
        """The seed's name: the key authenticates right now (not revoked, not expired). The
        owner's own state is checked at authentication. ``is_active`` means "usable right now"
        on every model here (see User.is_active)."""
        return self.state == State.ACTIVE

    def revoke(self) -> None:
        """Revoke this key now (its soft delete). Seed helper: no audit row (the service writes one)."""
        self.soft_delete()

    def update_last_used(self, *, now: datetime | None = None) -> bool:
        """Record use, at most once per minute per key, across all workers (not audited: it is
        bookkeeping, not a change anyone made).

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
