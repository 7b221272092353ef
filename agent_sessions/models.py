"""Agent conversation sessions and their messages (one row per message)."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
from django.db import IntegrityError, connections, models, router, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone
from psycopg.types.json import Jsonb

from config.db.expressions import jsonb_merge
from config.db.models import UUIDTimestampedModel
from config.db.raw_select import ModelColumns, array_literal, column_name, statement_cursor, where_sql
from config.db.soft_delete import LIVE, SoftDeleteManager, SoftDeleteModel, SoftDeleteQuerySet
from config.errors import InvalidInput, StateConflict
from idempotency.models import UNIQUE_KEY, IdempotencyKey, IdempotencyKeyTaken, KeyClaim


class SessionNotActive(StateConflict):
    """Only an active session may change status or take messages."""

    code = "session_not_active"


class MessageLimitReached(StateConflict):
    code = "message_limit_reached"


class RevisionMismatch(StateConflict):
    """``expected_revision`` is not the session's revision (the body carries the current one)."""

    code = "revision_mismatch"


class SessionExists(StateConflict):
    """A live session of this owner and agent already has this ``external_id`` (named in the body)."""

    code = "session_exists"


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


# Role.values builds its list on every access (an enum walk): the append checks against this.
ROLE_VALUES = frozenset(Role.values)

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
    external_id = models.CharField(
        max_length=255, null=True, blank=True, db_comment="the client's own name for the conversation"
    )
    idle_expiry = models.BooleanField(
        default=True,
        db_default=True,
        db_comment="false: expire_sessions ends it only at expires_at, however long it idles",
    )
    revision = models.PositiveBigIntegerField(
        default=0, db_default=0, db_comment="+1 on every append (batch), pop, clear and state delta"
    )

    objects: ClassVar[SessionManager] = SessionManager()
    all_objects: ClassVar[AllSessionsManager] = AllSessionsManager()  # soft-deleted sessions too

    class Meta:
        db_table = "sessions"
        ordering = ["-last_activity_at"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=Status.values), name="sessions_status_valid"),
            # One live conversation per client-chosen id, owner and agent; also the index of the
            # session create's lookup of that conversation and of ?external_id= within an owner.
            models.UniqueConstraint(
                fields=["user", "agent_id", "external_id"],
                condition=Q(deleted_at__isnull=True, external_id__isnull=False),
                name="sessions_owner_agent_external_uniq",
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


@dataclass(frozen=True)
class NewMessage:
    """One message of an append, as the API or a service hands it over (``item`` as JSON text)."""

    role: str
    content: str
    tool_calls: Any = None
    metadata: dict[str, Any] | None = None
    token_count: int = 0
    kind: str = "message"
    item: str | None = None


@dataclass(frozen=True)
class Appended:
    messages: list[Message]
    revision: int


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
        kind: str = "message",
        item: str | None = None,
    ) -> Message:
        """Append one message: ``append_batch`` with a batch of one."""
        new = NewMessage(role, content, tool_calls, metadata, token_count, kind, item)
        return self.append_batch(session_id=session_id, owner_id=owner_id, messages=[new]).messages[0]

    def append_batch(
        self,
        *,
        session_id: uuid.UUID,
        messages: Sequence[NewMessage],
        owner_id: uuid.UUID | None = None,
        expected_revision: int | None = None,
        state_delta: dict[str, Any] | None = None,
        claim: KeyClaim | None = None,
    ) -> Appended:
        """Append messages to an active session: allocate their consecutive sequences, bump the
        counters and the revision (once per batch), merge ``state_delta`` into ``context``, and
        insert the rows, in one statement, whatever the batch's size. All or nothing: a refusal
        or a failed row leaves the session as it was. Unaudited, like every append (the table
        is the record).

        The UPDATE takes the session row's lock, so concurrent appends to one session queue up
        and each batch gets the next run of sequences, never interleaved with another's; a
        failure after allocation undoes the counter with the statement, leaving no gap. Appends
        to different sessions never wait for each other. ``owner_id`` restricts the append to
        that owner's sessions (API isolation); ``expected_revision`` to a session still at that
        revision. Refusals (unknown, not active, stale revision, full) raise
        Session.DoesNotExist, SessionNotActive, RevisionMismatch or MessageLimitReached; they
        cost one more query, on the failure path only.

        ``claim``: an idempotency key recorded by the same statement (its answer to follow), so
        the key exists exactly when the messages do; a key the owner already holds fails the
        whole statement with IdempotencyKeyTaken, writing nothing.
        """
        if not messages:
            raise InvalidInput("An append needs at least one message.", field="messages")
        for new in messages:
            if new.role not in ROLE_VALUES:
                raise InvalidInput(f"Unknown role {new.role!r}.", field="role")
            if new.token_count < 0:
                raise InvalidInput("token_count cannot be negative.", field="token_count")
        limit = settings.SESSION_MAX_MESSAGES
        now = timezone.now()
        rows = [
            Message(
                session_id=session_id,
                role=new.role,
                content=new.content,
                tool_calls=new.tool_calls,
                metadata=new.metadata or {},
                token_count=new.token_count,
                kind=new.kind,
                item=new.item,
                created_at=now,
            )
            for new in messages
        ]
        count, tokens = len(rows), sum(row.token_count for row in rows)
        using = router.db_for_write(Message)
        sql, active_params = _append_statement(
            owned=owner_id is not None,
            conditional=expected_revision is not None,
            delta=bool(state_delta),
            claims=claim is not None,
        )
        params: list[Any] = [count, tokens]
        if state_delta:
            params.append(Jsonb(state_delta))
        params += [now, now, session_id, *active_params, count, limit]
        if owner_id is not None:
            params.append(owner_id)
        if expected_revision is not None:
            params.append(expected_revision)
        params += [
            count,
            now,
            # The columns as array literals: psycopg's list dumper quotes element by element in Python.
            array_literal([row.id for row in rows]),
            array_literal([row.role for row in rows]),
            array_literal([row.content for row in rows]),
            array_literal([None if row.tool_calls is None else json.dumps(row.tool_calls) for row in rows]),
            array_literal([json.dumps(row.metadata) for row in rows]),
            array_literal([row.token_count for row in rows]),
            array_literal([row.kind for row in rows]),
            array_literal([row.item for row in rows]),
        ]
        if claim is not None:
            params += [claim.user_id, claim.key, claim.fingerprint, now]
        connection = connections[using]
        try:
            # Inside a transaction, a savepoint, so that a taken key leaves it usable; in
            # autocommit (the API) the statement is its own transaction and needs none.
            with (
                transaction.atomic(using=using) if connection.in_atomic_block else nullcontext(),
                statement_cursor(using) as cursor,
            ):
                cursor.execute(sql, params)
                allocated = cursor.fetchone()
        except IntegrityError as exc:
            if claim is not None and UNIQUE_KEY in str(exc):
                raise IdempotencyKeyTaken(claim.key) from None
            raise
        if allocated is None:
            raise _refusal(session_id, owner_id, limit, count=count, expected_revision=expected_revision)
        last, revision = allocated
        for offset, row in enumerate(rows):
            row.sequence = last - count + 1 + offset
            row._state.adding = False
            row._state.db = using
        return Appended(messages=rows, revision=revision)


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
    kind = models.CharField(
        max_length=64, default="message", db_default="message", db_comment="message, function_call, reasoning, ..."
    )
    item = models.TextField(
        null=True,
        blank=True,
        db_comment="the item's JSON text exactly as stored (not jsonb: key order, number spelling, \\u0000)",
    )

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
def _append_statement(*, owned: bool, conditional: bool, delta: bool, claims: bool) -> tuple[str, tuple[Any, ...]]:
    """The append of a batch: one statement, so one round trip and its own transaction even in
    autocommit mode. The UPDATE allocates the batch's sequences (and holds the session row's
    lock until the statement commits), the INSERT takes the rows from arrays (``unnest ... WITH
    ORDINALITY``: one statement text for any batch size); if the INSERT fails, the UPDATE is
    undone with it. A data-modifying CTE runs to completion whether or not it is read.

    Identifiers come from the models, the active rule is ACTIVE as the ORM compiles it, every
    value is a parameter. Built once per process and shape; returns the SQL and ACTIVE's own
    parameters. The ORM twin (filter ACTIVE, update the counters, create the Messages) is held
    against it in tests/agent_sessions/test_queries.py.
    """
    s, m = ModelColumns(Session), ModelColumns(Message)
    active, active_params = where_sql(Session, ACTIVE)
    col = column_name

    inserted = [
        "id",
        "session",
        "sequence",
        "role",
        "content",
        "tool_calls",
        "metadata",
        "token_count",
        "created_at",
        "kind",
        "item",
    ]
    context = col(Session, "context")
    delta_clause = f"{context} = {context} || %s," if delta else ""
    owner_clause = f"AND {s.column('user')} = %s" if owned else ""
    revision_clause = f"AND {s.column('revision')} = %s" if conditional else ""
    claim_cte = ""
    if claims:
        k = ModelColumns(IdempotencyKey)
        keyed = ", ".join(col(IdempotencyKey, name) for name in ("user", "key", "fingerprint", "created_at"))
        claim_cte = f""", claimed AS (
    INSERT INTO {k.table} ({keyed}) SELECT %s, %s, %s, %s FROM slot
)"""  # noqa: S608 (identifiers from model metadata)
    sql = f"""
WITH slot AS (
    UPDATE {s.table}
       SET {col(Session, "total_messages")} = {col(Session, "total_messages")} + %s,
           {col(Session, "total_tokens")} = {col(Session, "total_tokens")} + %s,
           {col(Session, "revision")} = {col(Session, "revision")} + 1,
           {delta_clause}
           {col(Session, "last_activity_at")} = %s,
           {col(Session, "updated_at")} = %s
     WHERE {s.column("id")} = %s
       AND {active}
       AND {s.column("total_messages")} + %s <= %s
       {owner_clause}
       {revision_clause}
    RETURNING {s.column("id")}, {s.column("total_messages")}, {s.column("revision")}
), inserted AS (
    INSERT INTO {m.table} ({", ".join(col(Message, name) for name in inserted)})
    SELECT v.id, slot.{col(Session, "id")}, slot.{col(Session, "total_messages")} - %s + v.ord,
           v.role, v.content, v.tool_calls::jsonb, v.metadata::jsonb, v.token_count, %s, v.kind, v.item
      FROM slot,
           unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::integer[], %s::text[], %s::text[])
           WITH ORDINALITY AS v(id, role, content, tool_calls, metadata, token_count, kind, item, ord)
){claim_cte}
SELECT slot.{col(Session, "total_messages")}, slot.{col(Session, "revision")} FROM slot
"""  # noqa: S608 (identifiers from model metadata; every value a parameter)
    return sql, tuple(active_params)


def _refusal(
    session_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    limit: int,
    *,
    count: int = 1,
    expected_revision: int | None = None,
) -> Exception:
    """Why the allocating UPDATE matched nothing (only computed on the failure path)."""
    found = Session.objects.filter(pk=session_id)
    if owner_id is not None:
        found = found.filter(user_id=owner_id)
    session = found.only("status", "expires_at", "total_messages", "deleted_at", "revision").first()
    if session is None:
        return Session.DoesNotExist("No session matches the given query.")
    try:
        session.ensure_active()
    except SessionNotActive as exc:
        return exc
    if expected_revision is not None and session.revision != expected_revision:
        return revision_mismatch(session.revision, expected_revision)
    if session.total_messages + count > limit:
        if count == 1:
            return MessageLimitReached(f"The session holds the maximum of {limit} messages (SESSION_MAX_MESSAGES).")
        return MessageLimitReached(
            f"The session holds {session.total_messages} messages; {count} more would pass the maximum "
            f"of {limit} (SESSION_MAX_MESSAGES)."
        )
    return SessionNotActive("The session cannot take messages right now.")


def revision_mismatch(current: int, expected: int) -> RevisionMismatch:
    return RevisionMismatch(
        f"The session is at revision {current}, not {expected} (expected_revision).", revision=current
    )


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
