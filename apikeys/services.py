"""Writes to API keys: create, revoke, rotate. One transaction each, with its audit row."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from apikeys.authentication import forget_recent_key
from apikeys.models import APIKey
from audit.models import AuditLog
from audit.services import audit_log_purged, audit_log_record
from config.api.permissions import scopes_for
from config.db.batches import in_keyset_batches
from config.errors import InvalidInput, StateConflict

RESOURCE = "api_key"


# --- who may do what to whom: the API, the admin and the commands all meet these here ------


def _check_actor(actor: User | None, owner: User, verb: str) -> None:
    """Seeing a raw key means acting as its owner: only the owner or a platform admin may make
    one (create or rotate). ``actor`` None is the system (a management command)."""
    if actor is not None and actor.pk != owner.pk and not actor.is_platform_admin:
        raise InvalidInput(f"Only a platform admin may {verb} a key for another user.", field="user")


def _clean_scopes(owner: User, scopes: Iterable[str], actor_scopes: Iterable[str] | None) -> list[str]:
    cleaned = list(dict.fromkeys(scopes))
    if not cleaned:
        raise InvalidInput("A key needs at least one scope.", field="scopes")
    unknown = [s for s in cleaned if s not in APIKey.Scope.values]
    if unknown:
        raise InvalidInput(f"Unknown scope(s): {', '.join(unknown)}.", field="scopes")
    if actor_scopes is not None:
        # No escalation: a credential mints keys only with scopes it holds itself.
        escalated = set(cleaned) - set(actor_scopes)
        if escalated:
            raise InvalidInput(
                f"This key cannot grant scopes it does not hold: {', '.join(sorted(escalated))}.", field="scopes"
            )
    forbidden = [s for s in cleaned if s not in scopes_for(owner)]
    if forbidden:
        raise InvalidInput(
            f"The owner cannot use scope(s): {', '.join(forbidden)} (admin needs an admin user).",
            field="scopes",
        )
    return cleaned


def _key_fields(api_key: APIKey) -> dict[str, object]:
    return {
        "name": api_key.name,
        "user": api_key.user_id,
        "key_hint": api_key.key_hint,
        "scopes": api_key.scopes,
        "rate_limit_tier": api_key.rate_limit_tier,
        "expires_at": api_key.expires_at,
    }


@transaction.atomic
def api_key_create(
    *,
    actor: User | None,
    owner: User,
    name: str,
    scopes: Iterable[str] = ("read",),
    rate_limit_tier: str = APIKey.Tier.FREE,
    expires_at: datetime | None = None,
    actor_scopes: Iterable[str] | None = None,
) -> tuple[APIKey, str]:
    """Create a key; return it and the raw key, which is never stored or shown again.

    ``actor_scopes``: the scopes of the credential asking (an API key's, a staff session's);
    None for the system. A key is never given a scope its maker lacks.
    """
    _check_actor(actor, owner, "create")
    if owner.deleted_at is not None or not owner.is_active:
        raise InvalidInput("The owner is inactive or deleted.", field="user")
    if rate_limit_tier not in APIKey.Tier.values:
        raise InvalidInput(f"Unknown rate limit tier {rate_limit_tier!r}.", field="rate_limit_tier")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at must be in the future.", field="expires_at")
    name = name.strip()
    if not name:
        raise InvalidInput("A key needs a name.", field="name")
    api_key, raw = APIKey.objects.create_key(
        user=owner,
        name=name,
        scopes=_clean_scopes(owner, scopes, actor_scopes),
        rate_limit_tier=rate_limit_tier,
        expires_at=expires_at,
    )
    audit_log_record(
        action=AuditLog.Action.CREATE,
        resource_type=RESOURCE,
        resource_id=api_key.pk,
        actor=actor,
        changes={field: {"old": None, "new": value} for field, value in _key_fields(api_key).items()},
    )
    return api_key, raw


@transaction.atomic
def api_key_revoke(*, actor: User | None, api_key: APIKey) -> APIKey:
    api_key = APIKey.all_objects.select_for_update().get(pk=api_key.pk)
    if api_key.deleted_at is not None:
        raise StateConflict("The key is already revoked.")
    api_key.revoke()
    # This worker stops reusing the key at once; the others within KEY_REUSE_SECONDS.
    transaction.on_commit(lambda: forget_recent_key(api_key.key_hash))
    audit_log_record(
        action=AuditLog.Action.DELETE,
        resource_type=RESOURCE,
        resource_id=api_key.pk,
        actor=actor,
        changes={"deleted_at": {"old": None, "new": api_key.deleted_at}},
        metadata={"operation": "revoke"},
    )
    return api_key


@transaction.atomic
def api_key_rotate(
    *, actor: User | None, api_key: APIKey, grace_period: timedelta | None = None
) -> tuple[APIKey, str, APIKey]:
    """Issue a new key with the same name, scopes, tier and lifetime; retire the old one.

    With no grace period the old key is revoked at once; with one, it keeps working until
    ``now + grace_period`` (never later than its own expiry) and then stops. The new key's
    lifetime is the old key's full lifetime, measured exactly (the original lost a day per
    rotation and turned sk_live keys into sk keys).
    """
    old = APIKey.all_objects.select_for_update().select_related("user").get(pk=api_key.pk)
    _check_actor(actor, old.user, "rotate")
    now = timezone.now()
    if old.deleted_at is not None:
        raise StateConflict("A revoked key cannot be rotated.")
    if old.is_expired:
        raise StateConflict("An expired key cannot be rotated; create a new one.")
    if grace_period is not None and grace_period < timedelta(0):
        raise InvalidInput("The grace period cannot be negative.", field="grace_period_seconds")
    new_expires = now + (old.expires_at - old.created_at) if old.expires_at else None
    scopes = [s for s in old.scopes if s in scopes_for(old.user)] or [APIKey.Scope.READ.value]
    new, raw = APIKey.objects.create_key(
        user=old.user,
        name=old.name,
        scopes=scopes,
        rate_limit_tier=old.rate_limit_tier,
        expires_at=new_expires,
    )
    changes: dict[str, dict[str, object]] = {"replaced_by": {"old": None, "new": str(new.pk)}}
    if grace_period:
        grace_end = now + grace_period
        if old.expires_at is None or grace_end < old.expires_at:
            changes["expires_at"] = {"old": old.expires_at, "new": grace_end}
            old.expires_at = grace_end
            old.save(update_fields=["expires_at", "updated_at"])
    else:
        old.revoke()
        changes["deleted_at"] = {"old": None, "new": old.deleted_at}
    transaction.on_commit(lambda: forget_recent_key(old.key_hash))
    audit_log_record(
        action=AuditLog.Action.UPDATE,
        resource_type=RESOURCE,
        resource_id=old.pk,
        actor=actor,
        changes=changes,
        metadata={
            "operation": "rotate",
            "new_key_id": str(new.pk),
            "new_key_hint": new.key_hint,
            "grace_period_seconds": int(grace_period.total_seconds()) if grace_period else 0,
        },
    )
    return new, raw, old


# --- purge (management command) ---------------------------------------------------------------


@transaction.atomic
def _api_key_purge_batch(*, deleted_before: datetime, after: uuid.UUID | None, batch_size: int) -> list[uuid.UUID]:
    candidates = APIKey.all_objects.filter(deleted_at__lt=deleted_before).order_by("pk")
    if after is not None:
        candidates = candidates.filter(pk__gt=after)
    rows = list(candidates.select_for_update(skip_locked=True).values_list("pk", "user_id", "deleted_at")[:batch_size])
    if not rows:
        return []
    ids = [pk for pk, _, _ in rows]
    APIKey.all_objects.filter(pk__in=ids).hard_delete()
    audit_log_purged(resource_type=RESOURCE, rows=rows)
    return ids


def api_key_purge_deleted(
    *,
    deleted_before: datetime,
    batch_size: int = 500,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Hard-delete API keys revoked (soft-deleted) before ``deleted_before``; one audit row
    (DELETE, ``{"operation": "purge"}``) per key, in its batch's transaction. Returns the count.

    Run after ``user_purge_deleted``, which takes the keys of purged users with them; with
    ``dry_run`` the count leaves those out.
    """
    if dry_run:
        return (
            APIKey.all_objects.filter(deleted_at__lt=deleted_before)
            .exclude(user__deleted_at__lt=deleted_before)
            .count()
        )

    def run_batch(after: uuid.UUID | None) -> tuple[list[uuid.UUID], Counter[str]]:
        ids = _api_key_purge_batch(deleted_before=deleted_before, after=after, batch_size=batch_size)
        return ids, Counter({"api_key": len(ids)})

    total = in_keyset_batches(
        run_batch,
        batch_size=batch_size,
        progress=None if progress is None else lambda running: progress(running["api_key"]),
    )
    return total["api_key"]
