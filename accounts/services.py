"""Writes to users. Each is one transaction with its audit row; the API, the admin and the
management commands all come through here."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum

from accounts.models import LIST_CLEANERS, User
from accounts.oidc.identity import IdentityRefused, ProviderIdentity
from accounts.queries import identity_owner
from audit.models import AuditLog
from audit.services import audit_log_record, diff, snapshot
from config.context import acting_as_system
from config.db.batches import in_keyset_batches
from config.errors import DomainError, InvalidInput, StateConflict

logger = logging.getLogger(__name__)

RESOURCE = "user"
AUDITED_FIELDS = (
    "email",
    "name",
    "provider",
    "provider_user_id",
    "roles",
    "groups",
    "is_active",
    "is_staff",
    "is_superuser",
)


def _clean_list(field: str, values: Iterable[str]) -> list[str]:
    try:
        return LIST_CLEANERS[field](values)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


# --- who may do what to whom: the API, the admin and the commands all meet these here ------


def _refuse_self(actor: User | None, user: User, what: str, *, field: str | None = None) -> None:
    """Nobody deletes or deactivates their own account: it locks them out with no way back."""
    if actor is not None and actor.pk == user.pk:
        raise InvalidInput(f"You cannot {what} your own account.", field=field)


def _ensure_email_free(email: str, *, exclude: User | None = None) -> None:
    clash = User.objects.with_email(email)
    if exclude is not None:
        clash = clash.exclude(pk=exclude.pk)
    if clash.exists():
        raise InvalidInput("A user with this email address already exists.", field="email")


def _ensure_provider_id_free(provider: str, provider_user_id: str, *, exclude: User | None = None) -> None:
    clash = User.objects.filter(provider=provider, provider_user_id=provider_user_id)
    if exclude is not None:
        clash = clash.exclude(pk=exclude.pk)
    if clash.exists():
        raise InvalidInput("Another user already has this provider user id.", field="provider_user_id")


def _check_password(user: User, password: str) -> None:
    if user.is_oauth_user:
        raise InvalidInput("OAuth users sign in with their provider and cannot have a password.", field="password")
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field="password") from None


def _save_unique(user: User, **save_kwargs: Any) -> None:
    """Save; a concurrent writer that took the same email/provider id turns into a 400, not a 500."""
    try:
        with transaction.atomic():
            user.save(**save_kwargs)
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", "") or ""
        if "provider" in constraint:
            raise InvalidInput("Another user already has this provider user id.", field="provider_user_id") from None
        raise InvalidInput("A user with this email address already exists.", field="email") from None


@transaction.atomic
def user_create(
    *,
    actor: User | None,
    email: str,
    name: str,
    provider: str = User.Provider.LOCAL,
    provider_user_id: str = "",
    roles: Iterable[str] = (),
    groups: Iterable[str] = (),
    password: str | None = None,
    is_active: bool = True,
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    email = User.objects.normalize_email(email.strip())
    _ensure_email_free(email)
    user = User(
        email=email,
        name=name,
        provider=provider,
        provider_user_id=provider_user_id,
        roles=_clean_list("roles", roles),
        groups=_clean_list("groups", groups),
        is_active=is_active,
        is_staff=is_staff,
        is_superuser=is_superuser,
    )
    if provider_user_id:
        _ensure_provider_id_free(provider, provider_user_id)
    if password:
        _check_password(user, password)
        user.set_password(password)
    else:
        user.set_unusable_password()
    _save_unique(user, force_insert=True)
    changes = {name: {"old": None, "new": value} for name, value in snapshot(user, AUDITED_FIELDS).items()}
    if password:
        changes["password"] = {"old": None, "new": "***"}
    audit_log_record(
        action=AuditLog.Action.CREATE, resource_type=RESOURCE, resource_id=user.pk, actor=actor, changes=changes
    )
    return user


@transaction.atomic
def user_update(*, actor: User | None, user: User, **fields: Any) -> User:
    """Change any of AUDITED_FIELDS (and ``password``); one audit row with what changed.
    Nobody deactivates themselves."""
    user = User.all_objects.select_for_update().get(pk=user.pk)
    if user.deleted_at is not None:
        raise StateConflict("The user is deleted; restore it first.")
    before = snapshot(user, AUDITED_FIELDS)
    password = fields.pop("password", None)
    unknown = set(fields) - set(AUDITED_FIELDS)
    if unknown:
        raise InvalidInput(f"Cannot change: {', '.join(sorted(unknown))}.")
    for name in LIST_CLEANERS:
        if name in fields:
            fields[name] = _clean_list(name, fields[name])
    if fields.get("is_active") is False:
        _refuse_self(actor, user, "deactivate", field="is_active")
    if "email" in fields:
        fields["email"] = User.objects.normalize_email(fields["email"].strip())
        if fields["email"].lower() != user.email.lower():
            _ensure_email_free(fields["email"], exclude=user)
    for name, value in fields.items():
        setattr(user, name, value)
    if ("provider" in fields or "provider_user_id" in fields) and user.provider_user_id:
        _ensure_provider_id_free(user.provider, user.provider_user_id, exclude=user)
    if password:
        _check_password(user, password)
        user.set_password(password)
    elif user.is_oauth_user and user.has_usable_password():
        user.set_unusable_password()
    _save_unique(user)
    changes = diff(before, snapshot(user, AUDITED_FIELDS))
    if password:
        changes["password"] = {"old": "***", "new": "***"}
    if changes:
        audit_log_record(
            action=AuditLog.Action.UPDATE, resource_type=RESOURCE, resource_id=user.pk, actor=actor, changes=changes
        )
    return user


def user_set_password(*, actor: User | None, user: User, password: str) -> User:
    return user_update(actor=actor, user=user, password=password)


def user_set_active(*, actor: User | None, user: User, active: bool) -> User:
    return user_update(actor=actor, user=user, is_active=active)


@transaction.atomic
def user_soft_delete(*, actor: User | None, user: User) -> User:
    """Soft-delete, deactivate, revoke the user's keys; sessions stay. One audit row.
    Nobody deletes themselves."""
    _refuse_self(actor, user, "delete")
    user = User.all_objects.select_for_update().get(pk=user.pk)
    if user.deleted_at is not None:
        raise StateConflict("The user is already deleted.")
    revoked = user.api_keys.filter(deleted_at__isnull=True).count()
    was_active = user.is_active
    user.soft_delete()
    audit_log_record(
        action=AuditLog.Action.DELETE,
        resource_type=RESOURCE,
        resource_id=user.pk,
        actor=actor,
        changes={
            "deleted_at": {"old": None, "new": user.deleted_at},
            "is_active": {"old": was_active, "new": False},
        },
        metadata={"api_keys_revoked": revoked},
    )
    return user


@transaction.atomic
def user_restore(*, actor: User | None, user: User) -> User:
    user = User.all_objects.select_for_update().get(pk=user.pk)
    if user.deleted_at is None:
        raise StateConflict("The user is not deleted.")
    try:
        _ensure_email_free(user.email, exclude=user)
        _ensure_provider_id_free(user.provider, user.provider_user_id, exclude=user)
    except InvalidInput as exc:
        # The request carries no input: a live user took the address or id meanwhile (409).
        raise StateConflict(exc.message, field=exc.field) from None
    deleted_at = user.deleted_at
    user.deleted_at = None
    user.is_active = True
    _save_unique(user, update_fields=["deleted_at", "is_active", "updated_at"])
    audit_log_record(
        action=AuditLog.Action.UPDATE,
        resource_type=RESOURCE,
        resource_id=user.pk,
        actor=actor,
        changes={"deleted_at": {"old": deleted_at, "new": None}, "is_active": {"old": False, "new": True}},
        metadata={"operation": "restore"},
    )
    return user


# --- purge (management command) ---------------------------------------------------------------


def _owned_models() -> tuple[Any, Any, Any]:
    """The models whose rows a user's hard delete cascades to, found through the relations that
    point at users (the keys' and sessions' own foreign keys), not by importing those apps:
    (API keys, sessions, the sessions' messages)."""
    keys = User._meta.get_field("api_keys").related_model
    sessions = User._meta.get_field("agent_sessions").related_model
    messages = sessions._meta.get_field("messages").related_model  # type: ignore[union-attr]
    return keys, sessions, messages


@transaction.atomic
def _user_purge_batch(
    *, deleted_before: datetime, after: uuid.UUID | None, batch_size: int
) -> tuple[list[uuid.UUID], Counter[str]]:
    APIKey, Session, Message = _owned_models()
    candidates = User.all_objects.filter(deleted_at__lt=deleted_before).order_by("pk")
    if after is not None:
        candidates = candidates.filter(pk__gt=after)
    # The lock re-checks deleted_at: a user restored meanwhile is not purged, and one being
    # restored right now is skipped, not waited for.
    users = list(candidates.select_for_update(skip_locked=True).values_list("pk", "deleted_at")[:batch_size])
    counts: Counter[str] = Counter()
    if not users:
        return [], counts
    ids = [pk for pk, _ in users]
    keys = list(APIKey.all_objects.filter(user_id__in=ids).values_list("pk", "user_id"))
    sessions = list(Session.all_objects.filter(user_id__in=ids).values_list("pk", "user_id"))
    # The ORM cascade takes the user's keys, sessions (with their messages), group and
    # permission links and admin log entries. audit_logs has no foreign key: the trail stays.
    _, deleted = User.all_objects.filter(pk__in=ids).hard_delete()
    counts["user"] = deleted.get(User._meta.label, 0)
    counts["api_key"] = deleted.get(APIKey._meta.label, 0)
    counts["session"] = deleted.get(Session._meta.label, 0)
    counts["message"] = deleted.get(Message._meta.label, 0)
    owned: dict[uuid.UUID, Counter[str]] = {pk: Counter() for pk in ids}
    for resource_type, rows in (("api_key", keys), ("session", sessions)):
        for pk, user_id in rows:
            owned[user_id][resource_type] += 1
            audit_log_record(
                action=AuditLog.Action.DELETE,
                resource_type=resource_type,
                resource_id=pk,
                actor=None,
                metadata={"operation": "purge", "user_id": str(user_id), "with_user": True},
            )
    for pk, deleted_at in users:
        # No email or name here: a purge is often an erasure, and audit rows outlive it.
        audit_log_record(
            action=AuditLog.Action.DELETE,
            resource_type=RESOURCE,
            resource_id=pk,
            actor=None,
            metadata={
                "operation": "purge",
                "deleted_at": deleted_at.isoformat(),
                "api_keys": owned[pk]["api_key"],
                "sessions": owned[pk]["session"],
            },
        )
    return ids, counts


def user_purge_deleted(
    *,
    deleted_before: datetime,
    batch_size: int = 500,
    dry_run: bool = False,
    progress: Callable[[Counter[str]], None] | None = None,
) -> Counter[str]:
    """Hard-delete users soft-deleted before ``deleted_before``, with all their API keys and
    sessions (and messages), whenever those were deleted. One audit row (DELETE,
    ``{"operation": "purge"}``) per user, key and session, in its batch's transaction.

    Returns ``{"user": n, "api_key": k, "session": s, "message": m}``. Each batch of
    ``batch_size`` users commits on its own; ``progress`` gets the running totals.
    """
    if dry_run:
        APIKey, Session, _ = _owned_models()
        doomed = User.all_objects.filter(deleted_at__lt=deleted_before)
        sessions = Session.all_objects.filter(user__in=doomed.values("pk")).aggregate(
            sessions=Count("pk"), messages=Sum("total_messages", default=0)
        )
        return Counter(
            {
                "user": doomed.count(),
                "api_key": APIKey.all_objects.filter(user__in=doomed.values("pk")).count(),
                "session": sessions["sessions"],
                "message": int(sessions["messages"]),
            }
        )
    return in_keyset_batches(
        lambda after: _user_purge_batch(deleted_before=deleted_before, after=after, batch_size=batch_size),
        batch_size=batch_size,
        progress=progress,
    )


# --- identity-provider users (accounts.oidc): API bearer tokens and the admin's sign-in ---------

OIDC_ACTOR = "oidc"  # audit rows of provisioning and claim sync say "system:oidc"
SYNC_KEY = "oidc-sync:{user_id}"


def _identity_owner(identity: ProviderIdentity) -> User | None:
    # Deleted users too: a soft-deleted user stays locked out instead of coming back as a new one.
    return identity_owner(identity.provider, identity.subject)


def _ensure_may_act(user: User) -> None:
    if user.deleted_at is not None:
        raise IdentityRefused("token_user_deleted", "The token's user has been deleted.", user=user)
    if not user.is_active:
        raise IdentityRefused("token_user_inactive", "The token's user is inactive.", user=user)


def _sync_due(user: User) -> bool:
    """At most one claim sync per user per OIDC_SYNC_SECONDS, across every worker."""
    try:
        return bool(cache.add(SYNC_KEY.format(user_id=user.pk), 1, timeout=settings.OIDC_SYNC_SECONDS))
    except Exception:  # the cache is down: serve the request, sync another time
        return False


def _provision(identity: ProviderIdentity) -> User:
    if identity.email is None:
        raise IdentityRefused(
            "token_missing_claim", "The token has no email claim, which a first sign-in needs to create the user."
        )
    try:
        with acting_as_system(OIDC_ACTOR):
            user = user_create(
                actor=None,
                email=identity.email,
                name=identity.name or identity.email.split("@")[0],
                provider=identity.provider,
                provider_user_id=identity.subject,
                roles=identity.roles,
                groups=identity.groups or (),
                is_staff=identity.is_staff,
            )
    except InvalidInput:
        # A concurrent first request created them meanwhile; or another account has this email,
        # and an email alone never links an identity to an existing account.
        winner = _identity_owner(identity)
        if winner is None:
            raise IdentityRefused(
                "token_user_conflict",
                "Another account already uses this token's email address; an administrator must resolve it.",
            ) from None
        _ensure_may_act(winner)
        return winner
    try:
        cache.set(SYNC_KEY.format(user_id=user.pk), 1, timeout=settings.OIDC_SYNC_SECONDS)
    except Exception:
        logger.warning("oidc sync window not recorded: the cache is unavailable")
    return user


def _sync(user: User, changes: dict[str, Any]) -> User:
    if "email" in changes and User.objects.with_email(changes["email"]).exclude(pk=user.pk).exists():
        logger.warning("oidc email not synced: another account has it", extra={"user_id": str(user.pk)})
        changes.pop("email")
        if not changes:
            return user
    try:
        with acting_as_system(OIDC_ACTOR):
            return user_update(actor=None, user=user, **changes)
    except DomainError as exc:
        logger.warning("oidc claims not synced", extra={"user_id": str(user.pk), "reason": exc.message})
        return user


def user_for_identity(*, identity: ProviderIdentity, auto_provision: bool) -> User:
    """The user an identity provider's token stands for, found by (provider, provider_user_id)
    only, never by email. An unknown one is created (``auto_provision``) with one CREATE audit
    row; changed claims update the user (one UPDATE row) at most once per OIDC_SYNC_SECONDS,
    never a write per request. Both rows have the actor ``system:oidc``. IdentityRefused for an
    unknown user without provisioning, a deleted or inactive one, or an email held elsewhere.

    Not one transaction: the lookup is a read, and provisioning and the sync are each one
    (user_create, user_update); a provisioning that loses a race to a concurrent first request
    rolls back alone and the winner's row is used."""
    user = _identity_owner(identity)
    if user is None:
        if not auto_provision:
            raise IdentityRefused(
                "token_user_unknown",
                "No user has this identity and OIDC_AUTO_PROVISION is off; an administrator must create them first.",
            )
        return _provision(identity)
    _ensure_may_act(user)
    changes = identity.changes_for(user)
    if changes and _sync_due(user):
        return _sync(user, changes)
    return user
