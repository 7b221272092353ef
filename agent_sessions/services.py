"""Writes to sessions and their messages.

Status changes, edits, deletes and transfers are audited. Message appends are not: the
messages table is their record.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Count, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from agent_sessions.models import Message, Session
from audit.models import AuditLog
from audit.services import audit_log_purged, audit_log_record, diff
from config.db.batches import in_keyset_batches
from config.db.expressions import jsonb_merge
from config.errors import InvalidInput
from config.observability.metrics import record_message

RESOURCE = "session"
_ABSENT = object()


@transaction.atomic
def session_create(
    *,
    actor: User | None,
    owner: User,
    agent_id: str,
    title: str,
    context: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    expires_at: datetime | None = None,
) -> Session:
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at must be in the future.", field="expires_at")
    session = Session.objects.create(
        user=owner,
        agent_id=agent_id,
        title=title,
        context=context or {},
        metadata=metadata or {},
        expires_at=expires_at,
    )
    audit_log_record(
        action=AuditLog.Action.CREATE,
        resource_type=RESOURCE,
        resource_id=session.pk,
        actor=actor,
        changes={
            name: {"old": None, "new": getattr(session, name)}
            for name in ("user_id", "agent_id", "title", "status", "expires_at")
        },
    )
    return session


@transaction.atomic
def session_update(
    *,
    actor: User | None,
    session: Session,
    title: str | None = None,
    context: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Session:
    """Change the title; merge keys into context and metadata (not replace). One audit row with
    what changed; nothing written when nothing would change."""
    session = Session.objects.select_for_update().get(pk=session.pk)
    before: dict[str, Any] = {
        "title": session.title,
        "context": dict(session.context),
        "metadata": dict(session.metadata),
    }
    changes: dict[str, Any] = {}
    if title is not None and title != session.title:
        changes["title"] = title
    for field, values in (("context", context), ("metadata", metadata)):
        if values and any(before[field].get(key, _ABSENT) != value for key, value in values.items()):
            changes[field] = jsonb_merge(field, values)
    if not changes:
        return session
    Session.objects.filter(pk=session.pk).update(**changes, updated_at=timezone.now())
    session.refresh_from_db(fields=["title", "context", "metadata", "updated_at"])
    after = {"title": session.title, "context": session.context, "metadata": session.metadata}
    audit_log_record(
        action=AuditLog.Action.UPDATE,
        resource_type=RESOURCE,
        resource_id=session.pk,
        actor=actor,
        changes=diff(before, after),
    )
    return session


@transaction.atomic
def session_soft_delete(*, actor: User | None, session: Session) -> Session:
    session = Session.objects.select_for_update().get(pk=session.pk)
    session.soft_delete()
    audit_log_record(
        action=AuditLog.Action.DELETE,
        resource_type=RESOURCE,
        resource_id=session.pk,
        actor=actor,
        changes={"deleted_at": {"old": None, "new": session.deleted_at}},
    )
    return session


def _finish(actor: User | None, session: Session, status: str, detail: dict[str, Any]) -> Session:
    """Move an active session to a final status and audit it, in one transaction."""
    with transaction.atomic():
        old_status = session.status
        if status == Session.Status.COMPLETED:
            session.mark_completed(**detail)
        elif status == Session.Status.FAILED:
            session.mark_failed(detail.get("error"))
        else:
            session.mark_cancelled(detail.get("cancellation_reason"))
        audit_log_record(
            action=AuditLog.Action.UPDATE,
            resource_type=RESOURCE,
            resource_id=session.pk,
            actor=actor,
            changes={"status": {"old": old_status, "new": session.status}},
            metadata={k: v for k, v in detail.items() if v} or None,
        )
    return session


def session_complete(*, actor: User | None, session: Session, reason: str | None = None) -> Session:
    return _finish(actor, session, Session.Status.COMPLETED, {"completion_reason": reason} if reason else {})


def session_fail(*, actor: User | None, session: Session, error: str | None = None) -> Session:
    return _finish(actor, session, Session.Status.FAILED, {"error": error})


def session_cancel(*, actor: User | None, session: Session, reason: str | None = None) -> Session:
    return _finish(actor, session, Session.Status.CANCELLED, {"cancellation_reason": reason})


@transaction.atomic
def session_transfer(*, actor: User | None, session: Session, new_owner: User) -> Session:
    session = Session.objects.select_for_update().get(pk=session.pk)
    if new_owner.deleted_at is not None or not new_owner.is_active:
        raise InvalidInput("The new owner is inactive or deleted.", field="user")
    old_owner_id = session.user_id
    if old_owner_id == new_owner.pk:
        raise InvalidInput("The session already belongs to this user.", field="user")
    session.user = new_owner
    session.save(update_fields=["user", "updated_at"])
    audit_log_record(
        action=AuditLog.Action.UPDATE,
        resource_type=RESOURCE,
        resource_id=session.pk,
        actor=actor,
        changes={"user_id": {"old": old_owner_id, "new": new_owner.pk}},
        metadata={"operation": "transfer"},
    )
    return session


# --- messages ---------------------------------------------------------------------------------


def session_append_message(*, session_id: uuid.UUID, owner_id: uuid.UUID | None = None, **message: Any) -> Message:
    """Append a message (``role``, ``content``, ``tool_calls``, ``metadata``, ``token_count``) to
    an active session: ``Message.objects.append``, one statement that allocates the next sequence,
    bumps the counters and inserts. Not audited: the messages table is the record. ``owner_id``
    restricts it to that owner's sessions (API isolation)."""
    appended = Message.objects.append(session_id=session_id, owner_id=owner_id, **message)
    record_message(appended.role, appended.token_count)
    return appended


# --- reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionStats:
    total_sessions: int
    active_sessions: int
    total_messages: int
    total_tokens: int
    avg_messages_per_session: float


def session_stats(*, user: User) -> SessionStats:
    """One aggregate query over the user's live sessions (the original's get_session_stats)."""
    row = Session.objects.filter(user=user).aggregate(
        sessions=Count("id"),
        active=Count("id", filter=Q(status=Session.Status.ACTIVE)),
        messages=Sum("total_messages", default=0),
        tokens=Sum("total_tokens", default=0),
        avg_messages=Avg("total_messages", default=0.0),
    )
    return SessionStats(
        total_sessions=row["sessions"],
        active_sessions=row["active"],
        total_messages=int(row["messages"]),
        total_tokens=int(row["tokens"]),
        avg_messages_per_session=round(float(row["avg_messages"]), 2),
    )


# --- lifecycle sweeps (management commands) ---------------------------------------------------

EXPIRY_REASON = "expired"


def _due_for_expiry(*, now: datetime, idle_before: datetime) -> QuerySet[Session]:
    """Live active sessions past expires_at, or idle since idle_before (the original's rule)."""
    return Session.objects.filter(
        Q(expires_at__lte=now) | Q(last_activity_at__lte=idle_before), status=Session.Status.ACTIVE
    )


@transaction.atomic
def _session_expire_batch(
    *, due: QuerySet[Session], after: uuid.UUID | None, batch_size: int, now: datetime
) -> tuple[list[uuid.UUID], Counter[str]]:
    """Close one batch; return the ids seen (the keyset cursor), all of which were closed.

    FOR UPDATE re-evaluates the filter once a row is locked, so a session that another run
    closed, or that took a message, after it was first seen is left alone; SKIP LOCKED makes a
    concurrent run (or an append in flight) pass over rows it cannot have, not wait on them.
    Each row is therefore closed, and audited, by exactly one transaction.
    """
    candidates = due.order_by("pk")
    if after is not None:
        candidates = candidates.filter(pk__gt=after)
    rows = list(candidates.select_for_update(skip_locked=True).values_list("pk", "expires_at")[:batch_size])
    if not rows:
        return [], Counter()
    ids = [pk for pk, _ in rows]
    # last_activity_at is left as it was: expiry is not activity, and it dates the idleness.
    Session.all_objects.filter(pk__in=ids).update(
        status=Session.Status.COMPLETED,
        metadata=jsonb_merge("metadata", {"completion_reason": EXPIRY_REASON}),
        updated_at=timezone.now(),
    )
    for pk, expires_at in rows:
        audit_log_record(
            action=AuditLog.Action.UPDATE,
            resource_type=RESOURCE,
            resource_id=pk,
            actor=None,
            changes={"status": {"old": Session.Status.ACTIVE.value, "new": Session.Status.COMPLETED.value}},
            metadata={
                "completion_reason": EXPIRY_REASON,
                "rule": "expires_at" if expires_at is not None and expires_at <= now else "idle",
            },
        )
    return ids, Counter({"session": len(ids)})


def session_expire_due(
    *,
    now: datetime | None = None,
    idle_hours: float | None = None,
    batch_size: int = 500,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Complete every active session past ``expires_at`` or idle for ``idle_hours``
    (SESSION_EXPIRY_HOURS), with ``metadata["completion_reason"] = "expired"`` and one audit row
    each. Returns how many were closed (with ``dry_run``, how many are due).

    Not one transaction: each batch of ``batch_size`` commits on its own, so a long sweep never
    holds thousands of row locks, and two sweeps running at once share the work instead of
    closing a session twice. ``progress`` is called with the running total after each batch.
    """
    now = now or timezone.now()
    hours = settings.SESSION_EXPIRY_HOURS if idle_hours is None else idle_hours
    due = _due_for_expiry(now=now, idle_before=now - timedelta(hours=hours))
    if dry_run:
        return due.count()
    total = in_keyset_batches(
        lambda after: _session_expire_batch(due=due, after=after, batch_size=batch_size, now=now),
        batch_size=batch_size,
        progress=None if progress is None else lambda running: progress(running["session"]),
    )
    return total["session"]


def _purge_candidates(*, deleted_before: datetime, exclude_deleted_owners: bool) -> QuerySet[Session]:
    sessions = Session.all_objects.filter(deleted_at__lt=deleted_before)
    if exclude_deleted_owners:
        # Those go with their owner (accounts.services.user_purge_deleted).
        sessions = sessions.exclude(user__deleted_at__lt=deleted_before)
    return sessions


@transaction.atomic
def _session_purge_batch(
    *, deleted_before: datetime, after: uuid.UUID | None, batch_size: int
) -> tuple[list[uuid.UUID], Counter[str]]:
    candidates = _purge_candidates(deleted_before=deleted_before, exclude_deleted_owners=False).order_by("pk")
    if after is not None:
        candidates = candidates.filter(pk__gt=after)
    # The lock re-checks deleted_at, so a session restored meanwhile is not purged.
    rows = list(candidates.select_for_update(skip_locked=True).values_list("pk", "user_id", "deleted_at")[:batch_size])
    counts: Counter[str] = Counter()
    if not rows:
        return [], counts
    ids = [pk for pk, _, _ in rows]
    _, deleted = Session.all_objects.filter(pk__in=ids).hard_delete()
    counts["session"] = deleted.get(Session._meta.label, 0)
    counts["message"] = deleted.get(Message._meta.label, 0)
    audit_log_purged(resource_type=RESOURCE, rows=rows)  # deleted_at is set: these were soft-deleted
    return ids, counts


def session_purge_deleted(
    *,
    deleted_before: datetime,
    batch_size: int = 500,
    dry_run: bool = False,
    progress: Callable[[Counter[str]], None] | None = None,
) -> Counter[str]:
    """Hard-delete sessions (and their messages) soft-deleted before ``deleted_before``; one
    audit row (DELETE, ``{"operation": "purge"}``) per session, in its batch's transaction.

    Returns ``{"session": n, "message": m}``. Run after ``user_purge_deleted``, which takes the
    sessions of purged users with them; with ``dry_run`` the count leaves those out.
    """
    if dry_run:
        candidates = _purge_candidates(deleted_before=deleted_before, exclude_deleted_owners=True)
        row = candidates.aggregate(sessions=Count("pk"), messages=Sum("total_messages", default=0))
        return Counter({"session": row["sessions"], "message": int(row["messages"])})
    return in_keyset_batches(
        lambda after: _session_purge_batch(deleted_before=deleted_before, after=after, batch_size=batch_size),
        batch_size=batch_size,
        progress=progress,
    )
