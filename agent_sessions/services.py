"""Writes to sessions and their messages.

Status changes, edits, deletes and transfers are audited. Message appends are not: the
messages table is their record.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, F, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from agent_sessions.items import item_content, item_kind, item_role
from agent_sessions.models import Appended, Message, NewMessage, Session, SessionExists, revision_mismatch
from audit.models import AuditLog
from audit.services import audit_log_purged, audit_log_record, diff
from config.api.fields import JSONText
from config.db.batches import in_keyset_batches
from config.db.expressions import jsonb_merge
from config.errors import InvalidInput
from config.observability.metrics import record_message
from idempotency.models import KeyClaim

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
    external_id: str | None = None,
    idle_expiry: bool = True,
) -> Session:
    """Create a session. ``external_id`` (the client's name for the conversation) is unique per
    owner and agent among live sessions: a second one is SessionExists naming the first.
    ``idle_expiry=False``: only ``expires_at`` ends it, however long it idles."""
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("expires_at must be in the future.", field="expires_at")
    fields = {
        "user": owner,
        "agent_id": agent_id,
        "title": title,
        "context": context or {},
        "metadata": metadata or {},
        "expires_at": expires_at,
        "external_id": external_id,
        "idle_expiry": idle_expiry,
    }
    if external_id is None:
        session = Session.objects.create(**fields)
    else:
        try:
            # A savepoint: a concurrent create of the same conversation fails the unique index
            # (sessions_owner_agent_external_uniq) after waiting for it, not this transaction.
            with transaction.atomic():
                session = Session.objects.create(**fields)
        except IntegrityError:
            existing = Session.objects.filter(user=owner, agent_id=agent_id, external_id=external_id).first()
            if existing is None:
                raise
            raise SessionExists(
                f"A live session of agent {agent_id!r} already has external_id {external_id!r}.",
                session_id=str(existing.pk),
            ) from None
    audit_log_record(
        action=AuditLog.Action.CREATE,
        resource_type=RESOURCE,
        resource_id=session.pk,
        actor=actor,
        changes={
            name: {"old": None, "new": getattr(session, name)}
            for name in ("user_id", "agent_id", "title", "status", "expires_at", "external_id", "idle_expiry")
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
    """Append a message (``role``, ``content``, ``tool_calls``, ``metadata``, ``token_count``,
    ``kind``, ``item``) to an active session: a batch of one (``session_append_messages``).
    ``owner_id`` restricts it to that owner's sessions (API isolation)."""
    return session_append_messages(session_id=session_id, owner_id=owner_id, messages=[message]).messages[0]


def new_message(
    *,
    role: str | None = None,
    content: str | None = None,
    tool_calls: Any = None,
    metadata: dict[str, Any] | None = None,
    token_count: int = 0,
    kind: str | None = None,
    item: JSONText | str | dict[str, Any] | None = None,
) -> NewMessage:
    """One message to append; what the client left out of role, content and kind is projected
    from ``item`` (agent_sessions.items). ``item`` as validated by the API (``JSONText``), as
    JSON text, or as a dict (stored as ``json.dumps`` writes it)."""
    if isinstance(item, JSONText):
        value, text = item.value, item.text
    elif isinstance(item, str):
        value, text = json.loads(item), item
        if not isinstance(value, dict):
            raise InvalidInput("An item is a JSON object.", field="item")
    elif isinstance(item, dict):
        value, text = item, json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    else:
        value, text = None, None
    if value is None:
        if role is None or content is None:
            raise InvalidInput("A message without an item needs a role and content.", field="role")
        return NewMessage(role, content, tool_calls, metadata, token_count, kind or "message", None)
    return NewMessage(
        role if role is not None else item_role(value),
        content if content is not None else item_content(value),
        tool_calls,
        metadata,
        token_count,
        kind or item_kind(value),
        text,
    )


def session_append_messages(
    *,
    session_id: uuid.UUID,
    messages: list[dict[str, Any]],
    owner_id: uuid.UUID | None = None,
    expected_revision: int | None = None,
    state_delta: dict[str, Any] | None = None,
    claim: KeyClaim | None = None,
) -> Appended:
    """Append a batch of messages (each as ``new_message`` takes it) to an active session: all
    with consecutive sequences, or none; ``state_delta`` merged into ``context``; the revision
    bumped once. ``Message.objects.append_batch``: one statement whatever the batch's size. Not
    audited: the messages table is the record. ``owner_id`` restricts it to that owner's
    sessions (API isolation); ``expected_revision`` to a session still at that revision.
    ``claim``: an idempotency key the same statement records (idempotency.api)."""
    appended = Message.objects.append_batch(
        session_id=session_id,
        owner_id=owner_id,
        messages=[new_message(**message) for message in messages],
        expected_revision=expected_revision,
        state_delta=state_delta,
        claim=claim,
    )
    for message in appended.messages:
        record_message(message.role, message.token_count)
    return appended


@dataclass(frozen=True)
class Removed:
    messages: list[Message]  # oldest first
    revision: int


def _locked_active_session(session_id: uuid.UUID, owner_id: uuid.UUID | None, expected_revision: int | None) -> Session:
    sessions = Session.objects.select_for_update()
    if owner_id is not None:
        sessions = sessions.filter(user_id=owner_id)
    session = sessions.get(pk=session_id)  # Session.DoesNotExist: the API's 404
    session.ensure_active()
    if expected_revision is not None and session.revision != expected_revision:
        raise revision_mismatch(session.revision, expected_revision)
    return session


def _remove(*, actor: User | None, session: Session, doomed: list[Message], operation: str) -> Removed:
    """Delete ``doomed`` (the session's newest messages, newest first), adjust the counters and
    the revision, and audit it, in the caller's transaction. Sequences stay 1..n: only the
    newest go, so the next append takes total_messages + 1."""
    if not doomed:
        return Removed(messages=[], revision=session.revision)
    tokens = sum(message.token_count for message in doomed)
    Message.objects.filter(pk__in=[message.pk for message in doomed]).delete()
    now = timezone.now()
    old_total = session.total_messages
    Session.objects.filter(pk=session.pk).update(
        total_messages=F("total_messages") - len(doomed),
        total_tokens=F("total_tokens") - tokens,
        revision=F("revision") + 1,
        last_activity_at=now,
        updated_at=now,
    )
    session.refresh_from_db(fields=["total_messages", "total_tokens", "revision", "last_activity_at", "updated_at"])
    doomed.reverse()
    audit_log_record(
        action=AuditLog.Action.UPDATE,
        resource_type=RESOURCE,
        resource_id=session.pk,
        actor=actor,
        changes={"total_messages": {"old": old_total, "new": session.total_messages}},
        # Which messages went, not what they said: content may be anything a user typed.
        metadata={
            "operation": operation,
            "removed": len(doomed),
            "sequences": [doomed[0].sequence, doomed[-1].sequence],  # first and last removed
            "revision": session.revision,
        },
    )
    return Removed(messages=doomed, revision=session.revision)


@transaction.atomic
def session_pop_messages(
    *,
    actor: User | None,
    session_id: uuid.UUID,
    owner_id: uuid.UUID | None = None,
    count: int = 1,
    expected_revision: int | None = None,
) -> Removed:
    """Remove the newest ``count`` messages of an active session; returned oldest first. An
    empty session gives nothing back, and nothing is written (no revision, no audit row)."""
    if not 1 <= count <= 100:
        raise InvalidInput("count must be between 1 and 100.", field="count")
    session = _locked_active_session(session_id, owner_id, expected_revision)
    doomed = list(Message.objects.filter(session_id=session.pk).order_by("-sequence")[:count])
    return _remove(actor=actor, session=session, doomed=doomed, operation="pop")


@transaction.atomic
def session_clear_messages(
    *,
    actor: User | None,
    session_id: uuid.UUID,
    owner_id: uuid.UUID | None = None,
    expected_revision: int | None = None,
) -> Removed:
    """Remove every message of an active session (one audit row when there were any)."""
    session = _locked_active_session(session_id, owner_id, expected_revision)
    doomed = list(
        Message.objects.filter(session_id=session.pk).order_by("-sequence").only("id", "sequence", "token_count")
    )
    return _remove(actor=actor, session=session, doomed=doomed, operation="clear")


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
    """Live active sessions past expires_at, or idle since idle_before (the original's rule)
    unless created with ``idle_expiry=False`` (a conversation resumed any time later)."""
    return Session.objects.filter(
        Q(expires_at__lte=now) | Q(last_activity_at__lte=idle_before, idle_expiry=True),
        status=Session.Status.ACTIVE,
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
