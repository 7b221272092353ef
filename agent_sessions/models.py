from __future__ import annotations

import functools
import uuid
from typing import Any, Self

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from config.errors import StateConflict
from config.models import UUIDTimestampedModel
from config.precompiled import RowLoader, fetch_row
from config.soft_delete import SoftDeleteManager, SoftDeleteModel, SoftDeleteQuerySet


class SessionNotActive(StateConflict):
    """Only an active session may change status or take messages."""

    code = "session_not_active"


class MessageLimitReached(StateConflict):
    code = "message_limit_reached"


class SessionQuerySet(SoftDeleteQuerySet):
    def for_user(self, user: models.Model) -> Self:
        return self.filter(user=user)

    def active(self) -> Self:
        now = timezone.now()
        return self.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
            status=Session.Status.ACTIVE,
            deleted_at__isnull=True,
        )


class SessionManager(SoftDeleteManager.from_queryset(SessionQuerySet)):
    def get_live(self, pk: uuid.UUID, *, owner_id: uuid.UUID | None = None) -> Session | None:
        """A live (not soft-deleted) session by id; with ``owner_id``, only if that user owns it.

        The lookup behind every detail route, compiled once (config.precompiled): the same
        statement as ``Session.objects.filter(user_id=owner_id).filter(pk=pk).first()``.
        """
        any_owner, one_owner, loader = _live_session_queries()
        if owner_id is None:
            row = fetch_row(any_owner, [pk], [loader])
        else:
            row = fetch_row(one_owner, [pk, owner_id], [loader])
        return row[0] if row else None


@functools.cache
def _live_session_queries() -> tuple[str, str, RowLoader]:
    s = RowLoader(Session, "s")
    any_owner = (
        f"SELECT {', '.join(s.columns)} FROM {s.table} "  # noqa: S608 (identifiers from model metadata)
        f"WHERE {s.column('id')} = %s AND {s.column('deleted_at')} IS NULL"
    )
    return any_owner, f"{any_owner} AND {s.column('user')} = %s", s


class Session(UUIDTimestampedModel, SoftDeleteModel):
    """An agent conversation session. Its messages are rows of Message, not a JSON array."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="agent_sessions",
        db_index=False,  # indexed below under the seed's name
    )
    agent_id = models.CharField(max_length=255)
    title = models.CharField(max_length=500)
    status = models.CharField(max_length=50, choices=Status.choices, default=Status.ACTIVE)
    context = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    total_messages = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    last_activity_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, db_comment="NULL = never expires")

    objects = SessionManager()
    all_objects = models.Manager.from_queryset(SessionQuerySet)()

    class Meta:
        db_table = "sessions"
        ordering = ["-last_activity_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["active", "completed", "failed", "cancelled"]),
                name="sessions_status_valid",
            ),
        ]
        indexes = [
            # Seed ix_sessions_user_id: a user's sessions (isolation filter, cascade).
            models.Index(fields=["user"], name="ix_sessions_user_id"),
            # Seed ix_sessions_agent_id: sessions of one agent (agent_id filter).
            models.Index(fields=["agent_id"], name="ix_sessions_agent_id"),
            # Seed ix_sessions_status: the status filter.
            models.Index(fields=["status"], name="ix_sessions_status"),
            # Seed ix_sessions_last_activity_at: the admin's and admin API's recency ordering.
            models.Index(fields=["last_activity_at"], name="ix_sessions_last_activity_at"),
            # Seed ix_sessions_expires_at: the expiry sweep (expire_sessions).
            models.Index(fields=["expires_at"], name="ix_sessions_expires_at"),
            # Seed ix_sessions_user_id_status: a user's sessions by status (stats, status filter).
            models.Index(fields=["user", "status"], name="ix_sessions_user_status"),
            # Seed ix_sessions_user_id_last_activity: the list endpoint, newest activity first.
            models.Index(fields=["user", "last_activity_at"], name="ix_sessions_user_activity"),
            # Seed ix_sessions_agent_id_status: an agent's active sessions.
            models.Index(fields=["agent_id", "status"], name="ix_sessions_agent_status"),
            # Seed ix_sessions_status_deleted_at: live sessions by status (expiry sweep).
            models.Index(fields=["status", "deleted_at"], name="ix_sessions_status_deleted"),
        ]

    def __str__(self) -> str:
        return self.title

    def __repr__(self) -> str:
        return (
            f"Session(id={self.id}, user_id={self.user_id}, agent_id={self.agent_id!r}, "
            f"title={self.title!r}, status={self.status!r}, messages={self.total_messages})"
        )

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        """Active status, not deleted, and not past expires_at (the original ignored expiry)."""
        return self.status == self.Status.ACTIVE and self.deleted_at is None and not self.is_expired

    def ensure_active(self) -> None:
        if self.deleted_at is not None:
            raise SessionNotActive("the session is deleted")
        if self.status != self.Status.ACTIVE:
            raise SessionNotActive(f"the session is {self.status}, not active")
        if self.is_expired:
            raise SessionNotActive("the session has expired")

    # --- messages ---

    def add_message(self, role: str, content: str, **kwargs: Any) -> Message:
        """Append a message atomically (next sequence, counters, activity in one transaction).

        ``kwargs``: ``tool_calls``, ``metadata``, ``token_count``. Safe under concurrent callers.
        """
        from agent_sessions.services import session_append_message

        message = session_append_message(session_id=self.pk, role=role, content=content, **kwargs)
        self.refresh_from_db(fields=["total_messages", "total_tokens", "last_activity_at", "updated_at"])
        return message

    # --- context and metadata (merges persist) ---

    def update_context(self, **values: Any) -> None:
        self._merge_json("context", values)

    def update_metadata(self, **values: Any) -> None:
        self._merge_json("metadata", values)

    def _merge_json(self, field: str, values: dict[str, Any]) -> None:
        """Merge keys into a JSON object column with one UPDATE (`||`), so merges don't race."""
        current = dict(getattr(self, field) or {})
        current.update(values)
        setattr(self, field, current)
        if self._state.adding:
            return
        from django.db.models import F, Func, JSONField, Value

        now = timezone.now()
        Session.all_objects.filter(pk=self.pk).update(
            **{
                field: Func(
                    F(field),
                    Value(values, output_field=JSONField()),
                    template="%(expressions)s",
                    arg_joiner=" || ",
                    output_field=JSONField(),
                )
            },
            updated_at=now,
        )
        self.refresh_from_db(fields=[field])
        self.updated_at = now

    # --- lifecycle ---

    def mark_completed(self, **metadata: Any) -> None:
        self._change_status(self.Status.COMPLETED, metadata)

    def mark_failed(self, error: str | None = None) -> None:
        self._change_status(self.Status.FAILED, {"error": error} if error else {})

    def mark_cancelled(self, reason: str | None = None) -> None:
        self._change_status(self.Status.CANCELLED, {"cancellation_reason": reason} if reason else {})

    def _change_status(self, status: str, metadata: dict[str, Any]) -> None:
        """Move an active session to a final status; the row lock makes a race end one way."""
        with transaction.atomic():
            locked = Session.all_objects.select_for_update().get(pk=self.pk)
            locked.ensure_active()
            locked.status = status
            locked.metadata = {**(locked.metadata or {}), **metadata}
            locked.last_activity_at = timezone.now()
            locked.save(update_fields=["status", "metadata", "last_activity_at", "updated_at"])
        for name in ("status", "metadata", "last_activity_at", "updated_at"):
            setattr(self, name, getattr(locked, name))


class Message(models.Model):
    """One message of a session; `sequence` runs 1..n per session with no gaps."""

    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        SYSTEM = "system", "System"
        TOOL = "tool", "Tool"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages", db_index=False)
    sequence = models.PositiveIntegerField()
    role = models.CharField(max_length=20, choices=Role.choices)
    content = models.TextField()
    tool_calls = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "session_messages"
        ordering = ["session", "sequence"]
        constraints = [
            # Also the index every message read uses: (session_id, sequence) keyset pages.
            models.UniqueConstraint(fields=["session", "sequence"], name="messages_session_seq_uniq"),
            models.CheckConstraint(
                condition=Q(role__in=["user", "assistant", "system", "tool"]),
                name="messages_role_valid",
            ),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="messages_sequence_positive"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.role}"
