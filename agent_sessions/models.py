"""Agent conversation sessions and their messages (one row per message)."""

from __future__ import annotations

import functools
import uuid
from typing import Any, ClassVar, Self

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
from django.db import connections, models, router, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone
from psycopg.types.json import Jsonb

from config.db.expressions import jsonb_merge
from config.db.models import UUIDTimestampedModel
from config.db.raw_select import ModelColumns, column_name, where_sql
from config.db.soft_delete import LIVE, SoftDeleteManager, SoftDeleteModel, SoftDeleteQuerySet
from config.errors import InvalidInput, StateConflict


class SessionNotActive(StateConflict):
    """Only an active session may change status or take messages."""

    code = "session_not_active"


class MessageLimitReached(StateConflict):
    code = "message_limit_reached"


class Status(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Role(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"
    SYSTEM = "system", "System"
    TOOL = "tool", "Tool"


# The one definition of an active session in the database: active status, live, not past
# expires_at (by the database's clock). SessionQuerySet.active() and the append statement
# both use it; Session.is_active is the same rule on one row (tests hold them together).
ACTIVE = Q(status=Status.ACTIVE) & LIVE & (Q(expires_at__isnull=True) | Q(expires_at__gt=Now()))


class SessionQuerySet(SoftDeleteQuerySet):
    def for_user(self, user: models.Model) -> Self:
        return self.filter(user=user)

    def active(self) -> Self:
        return self.filter(ACTIVE)


class SessionManager(SoftDeleteManager.from_queryset(SessionQuerySet)):  # type: ignore[misc]  # the plugin reads from_queryset on Manager only
    """Live sessions (``Session.all_objects`` has the soft-deleted ones too)."""


AllSessionsManager = models.Manager.from_queryset(SessionQuerySet)


class Session(UUIDTimestampedModel, SoftDeleteModel):
    """An agent conversation session. Its messages are rows of Message, not a JSON array."""

    Status = Status

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

    objects: ClassVar[SessionManager] = SessionManager()
    all_objects: ClassVar[AllSessionsManager] = AllSessionsManager()  # soft-deleted sessions too

    class Meta:
        db_table = "sessions"
        ordering = ["-last_activity_at"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=Status.values), name="sessions_status_valid"),
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
        """ACTIVE on this row: active status, not deleted, not past expires_at (the original
        ignored expiry). The seed's name; it means "usable right now" as on every model here (see
        User.is_active): the session takes messages and status changes."""
        return self.status == Status.ACTIVE and self.deleted_at is None and not self.is_expired

    def ensure_active(self) -> None:
        if self.deleted_at is not None:
            raise SessionNotActive("the session is deleted")
        if self.status != self.Status.ACTIVE:
            raise SessionNotActive(f"the session is {self.status}, not active")
        if self.is_expired:
            raise SessionNotActive("the session has expired")

    # --- the seed's helpers ---------------------------------------------------------------------
    # They change one session and persist at once, but write no audit row: the API, the admin and
    # the commands go through agent_sessions.services, which do (appends are never audited: the
    # messages table is their record). Their rules are the services' rules.

    def add_message(self, role: str, content: str, **kwargs: Any) -> Message:
        """Append a message (``kwargs``: ``tool_calls``, ``metadata``, ``token_count``), as
        ``Message.objects.append`` does for the API; then refresh this session's counters."""
        message = Message.objects.append(session_id=self.pk, role=role, content=content, **kwargs)
        self.refresh_from_db(fields=["total_messages", "total_tokens", "last_activity_at", "updated_at"])
        return message

    def update_context(self, **values: Any) -> None:
        """Merge keys into ``context`` and save (seed helper: no audit row)."""
        self._merge_json("context", values)

    def update_metadata(self, **values: Any) -> None:
        """Merge keys into ``metadata`` and save (seed helper: no audit row)."""
        self._merge_json("metadata", values)

    def _merge_json(self, field: str, values: dict[str, Any]) -> None:
        if self._state.adding:
            setattr(self, field, {**(getattr(self, field) or {}), **values})
            return
        Session.all_objects.filter(pk=self.pk).update(
            **{field: jsonb_merge(field, values), "updated_at": timezone.now()}
        )
        self.refresh_from_db(fields=[field, "updated_at"])

    def mark_completed(self, **metadata: Any) -> None:
        """Complete an active session (seed helper: no audit row; services.session_complete has one)."""
        self._change_status(Status.COMPLETED, metadata)

    def mark_failed(self, error: str | None = None) -> None:
        """Fail an active session, keeping ``error`` in metadata (seed helper: no audit row)."""
        self._change_status(Status.FAILED, {"error": error} if error else {})

    def mark_cancelled(self, reason: str | None = None) -> None:
        """Cancel an active session, keeping the reason in metadata (seed helper: no audit row)."""
        self._change_status(Status.CANCELLED, {"cancellation_reason": reason} if reason else {})

    def _change_status(self, status: str, metadata: dict[str, Any]) -> None:
        """Move an active session to a final status; the row lock makes a race end one way."""
        with transaction.atomic():
            Session.all_objects.select_for_update().only("status", "deleted_at", "expires_at").get(
                pk=self.pk
            ).ensure_active()
            now = timezone.now()
            Session.all_objects.filter(pk=self.pk).update(
                status=status, metadata=jsonb_merge("metadata", metadata), last_activity_at=now, updated_at=now
            )
        self.refresh_from_db(fields=["status", "metadata", "last_activity_at", "updated_at"])


class MessageManager(models.Manager["Message"]):
    def append(
        self,
        *,
        session_id: uuid.UUID,
        role: str,
        content: str,
        owner_id: uuid.UUID | None = None,
        tool_calls: Any = None,
        metadata: dict[str, Any] | None = None,
        token_count: int = 0,
    ) -> Message:
        """Append a message to an active session: allocate the next sequence, bump the counters,
        insert the row, in one statement. Unaudited, like every append (the table is the record).

        The UPDATE takes the session row's lock, so concurrent appends to one session queue up and
        each gets the next sequence; a failure after allocation undoes the counter with the
        statement, leaving no gap. Appends to different sessions never wait for each other.
        ``owner_id`` restricts the append to that owner's sessions (API isolation). Refusals
        (unknown, not active, full) raise Session.DoesNotExist, SessionNotActive or
        MessageLimitReached; they cost one more query, on the failure path only.
        """
        if role not in Role.values:
            raise InvalidInput(f"Unknown role {role!r}.", field="role")
        if token_count < 0:
            raise InvalidInput("token_count cannot be negative.", field="token_count")
        limit = settings.SESSION_MAX_MESSAGES
        message = Message(
            session_id=session_id,
            role=role,
            content=content,
            tool_calls=tool_calls,
            metadata=metadata or {},
            token_count=token_count,
            created_at=timezone.now(),
        )
        using = router.db_for_write(Message)
        sql, active_params = _append_statement(owned=owner_id is not None)
        now = message.created_at
        params: list[Any] = [token_count, now, now, session_id, *active_params, limit]
        if owner_id is not None:
            params.append(owner_id)
        params += [
            message.id,
            role,
            content,
            Jsonb(tool_calls) if tool_calls is not None else None,
            Jsonb(message.metadata),
            token_count,
            now,
        ]
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            raise _refusal(session_id, owner_id, limit)
        message.sequence = row[0]
        message._state.adding = False
        message._state.db = using
        return message


class Message(models.Model):
    """One message of a session; `sequence` runs 1..n per session with no gaps."""

    Role = Role

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="messages", db_index=False)
    sequence = models.PositiveIntegerField()
    role = models.CharField(max_length=20, choices=Role.choices)
    content = models.TextField()
    tool_calls = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    objects = MessageManager()

    class Meta:
        db_table = "session_messages"
        ordering = ["session", "sequence"]
        constraints = [
            # Also the index every message read uses: (session_id, sequence) keyset pages.
            models.UniqueConstraint(fields=["session", "sequence"], name="messages_session_seq_uniq"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="messages_role_valid"),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="messages_sequence_positive"),
        ]
        indexes = [
            # Messages appended today (and each day's messages, once, for ActivityDay): rows are
            # inserted in created_at order, so a BRIN index (a few pages, next to nothing to
            # maintain on the append path) narrows a day to the block ranges holding it.
            BrinIndex(fields=["created_at"], name="ix_messages_created_brin", autosummarize=True),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.role}"


@functools.cache
def _append_statement(*, owned: bool) -> tuple[str, tuple[Any, ...]]:
    """The append: one statement, so one round trip and its own transaction even in autocommit
    mode. The UPDATE allocates the next sequence (and holds the session row's lock until the
    statement commits), the INSERT uses it; if the INSERT fails, the UPDATE is undone with it.

    Identifiers come from the models, the active rule is ACTIVE as the ORM compiles it, every
    value is a parameter. Built once per process; returns the SQL and ACTIVE's own parameters.
    The ORM twin (filter ACTIVE, update the counters, create the Message) is held against it in
    tests/agent_sessions/test_queries.py.
    """
    s, m = ModelColumns(Session), ModelColumns(Message)
    active, active_params = where_sql(Session, ACTIVE)
    col = column_name

    inserted = ["id", "session", "sequence", "role", "content", "tool_calls", "metadata", "token_count", "created_at"]
    owner_clause = f"AND {s.column('user')} = %s" if owned else ""
    sql = f"""
WITH slot AS (
    UPDATE {s.table}
       SET {col(Session, "total_messages")} = {col(Session, "total_messages")} + 1,
           {col(Session, "total_tokens")} = {col(Session, "total_tokens")} + %s,
           {col(Session, "last_activity_at")} = %s,
           {col(Session, "updated_at")} = %s
     WHERE {s.column("id")} = %s
       AND {active}
       AND {s.column("total_messages")} < %s
       {owner_clause}
    RETURNING {s.column("id")}, {s.column("total_messages")}
)
INSERT INTO {m.table} ({", ".join(col(Message, name) for name in inserted)})
SELECT %s, slot.{col(Session, "id")}, slot.{col(Session, "total_messages")}, %s, %s, %s, %s, %s, %s
  FROM slot
RETURNING {col(Message, "sequence")}
"""  # noqa: S608 (identifiers from model metadata; every value a parameter)
    return sql, tuple(active_params)


def _refusal(session_id: uuid.UUID, owner_id: uuid.UUID | None, limit: int) -> Exception:
    """Why the allocating UPDATE matched nothing (only computed on the failure path)."""
    found = Session.objects.filter(pk=session_id)
    if owner_id is not None:
        found = found.filter(user_id=owner_id)
    session = found.only("status", "expires_at", "total_messages", "deleted_at").first()
    if session is None:
        return Session.DoesNotExist("No session matches the given query.")
    try:
        session.ensure_active()
    except SessionNotActive as exc:
        return exc
    if session.total_messages >= limit:
        return MessageLimitReached(f"The session holds the maximum of {limit} messages (SESSION_MAX_MESSAGES).")
    return SessionNotActive("The session cannot take messages right now.")


class ActivityDay(models.Model):
    """One settled day of session activity for one agent, or (``agent_id`` NULL) for all agents.

    Written once per day by ``agent_sessions.activity`` (``config.db.daily``), never updated;
    the admin's dashboard reads 30 of these days instead of a month of messages.
    """

    day = models.DateField()
    agent_id = models.CharField(max_length=255, null=True, blank=True, db_comment="NULL: the day's total")
    sessions_created = models.PositiveIntegerField(default=0)
    messages = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "session_activity_days"
        ordering = ["day"]
        constraints = [
            # Serves the dashboard's reads (a range of days) and makes a second fill a no-op.
            models.UniqueConstraint(fields=["day", "agent_id"], name="activity_days_day_agent_uniq"),
            models.UniqueConstraint(
                fields=["day"], condition=Q(agent_id__isnull=True), name="activity_days_day_total_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.agent_id or 'all agents'}"
