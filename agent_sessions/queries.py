"""Hand-written reads of sessions and their messages, where a profile showed the ORM's cost.

``bench/profile.py`` showed the ORM compiling these on every request: a third of a session
detail GET, half of a message page. Each statement is built once per process from the models'
metadata, with the live-row rule (``config.db.soft_delete.LIVE``) compiled by the ORM itself,
and is held against the queryset it stands in for in tests/agent_sessions/test_queries.py.

* ``live_session``: one live session by id, optionally only if a given user owns it.
* ``MessagePage``: a session's messages, page by page, as DRF's cursor pagination asks for them.
* ``agent_ids``: the agent ids sessions carry, for the admin's filter, by a loose index scan.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, replace
from typing import Any

from django.db import router

from agent_sessions.models import Message, Session
from config.db.raw_select import ModelColumns, distinct_values, select_one, statement_cursor, where_sql
from config.db.soft_delete import LIVE


@functools.cache
def _live_session(*, owned: bool) -> tuple[str, list[Any], ModelColumns]:
    s = ModelColumns(Session)
    live, live_params = where_sql(Session, LIVE)
    sql = f"SELECT {s.select_list} FROM {s.table} WHERE {s.column('id')} = %s AND {live}"  # noqa: S608 (identifiers from model metadata)
    if owned:
        sql += f" AND {s.column('user')} = %s"
    return sql, live_params, s


def live_session(pk: uuid.UUID, *, owner_id: uuid.UUID | None = None) -> Session | None:
    """``Session.objects.filter(pk=pk[, user_id=owner_id]).first()``: a live session by id;
    with ``owner_id``, only if that user owns it. The lookup behind every session detail route."""
    sql, live_params, shape = _live_session(owned=owner_id is not None)
    params: list[Any] = [pk, *live_params]
    if owner_id is not None:
        params.append(owner_id)
    row = select_one(sql, params, [shape])
    if row is None:
        return None
    session = row[0]
    assert isinstance(session, Session)
    return session


_OPERATORS = {"sequence__gt": ">", "sequence__lt": "<"}


@functools.cache
def _page_query(*, descending: bool, operator: str | None, owned: bool) -> tuple[str, list[Any], ModelColumns]:
    m, s = ModelColumns(Message), ModelColumns(Session)
    live, live_params = where_sql(Session, LIVE)
    conditions = [f"{m.column('session')} = %s", live]
    if owned:
        conditions.append(f"{s.column('user')} = %s")
    if operator:
        conditions.append(f"{m.column('sequence')} {operator} %s")
    sql = (
        f"SELECT {m.select_list}, {s.column('revision')} FROM {m.table} "  # noqa: S608 (identifiers from model metadata)
        f"JOIN {s.table} ON {s.column('id')} = {m.column('session')} "
        f"WHERE {' AND '.join(conditions)} "
        f"ORDER BY {m.column('sequence')} {'DESC' if descending else 'ASC'} LIMIT %s OFFSET %s"
    )
    return sql, live_params, m


@dataclass(frozen=True)
class MessagePage:
    """A session's messages, for DRF's ``CursorPagination``, which does exactly three things with
    its queryset: ``order_by("sequence")`` (or ``"-sequence"`` for a previous page),
    ``filter(sequence__gt=position)`` (or ``__lt``), and a bounded slice; and reads ``.model``
    to check a cursor's position. Those are answered here with SQL built once per shape instead
    of the ORM compiling a join, a filter and an ordering on every request; DRF's cursor logic
    (positions, offsets, links) runs unchanged on top. Anything else raises.

    The statement is the one the ORM sent for ``Message.objects.filter(session_id=...,
    session__deleted_at__isnull=True[, session__user_id=owner])``: a soft-deleted session shows
    nothing and, for a non-admin, another user's session shows nothing, walking the
    (session_id, sequence) unique index. tests/agent_sessions/test_queries.py pages through it
    and through that queryset with DRF's pagination and compares every page.
    """

    session_id: uuid.UUID
    owner_id: uuid.UUID | None  # None: any owner (an admin's request)
    descending: bool = False
    bound: tuple[str, int] | None = None

    model = Message

    def order_by(self, *ordering: str) -> MessagePage:
        if ordering not in (("sequence",), ("-sequence",)):
            raise ValueError(f"messages are ordered by sequence, not {ordering!r}")
        return replace(self, descending=ordering[0].startswith("-"))

    def filter(self, **lookup: object) -> MessagePage:
        if len(lookup) != 1 or next(iter(lookup)) not in _OPERATORS or self.bound is not None:
            raise ValueError(f"a message page filters once, on sequence__gt or sequence__lt, not {lookup!r}")
        ((name, value),) = lookup.items()
        return replace(self, bound=(_OPERATORS[name], int(str(value))))

    def __getitem__(self, bounds: slice) -> list[Message]:
        offset = bounds.start or 0
        if not isinstance(bounds, slice) or bounds.stop is None or bounds.step is not None or offset < 0:
            raise ValueError("a message page is a bounded slice")
        sql, live_params, shape = _page_query(
            descending=self.descending, operator=self.bound[0] if self.bound else None, owned=self.owner_id is not None
        )
        params: list[Any] = [self.session_id, *live_params]
        if self.owner_id is not None:
            params.append(self.owner_id)
        if self.bound:
            params.append(self.bound[1])
        params += [bounds.stop - offset, offset]
        # Where a queryset of messages would read: a replica inside replica_read (config.db.replicas).
        with statement_cursor(router.db_for_read(Message)) as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        messages: list[Message] = []
        load = shape.loader()
        for row in rows:
            message = load(row[:-1])
            assert isinstance(message, Message)
            # The session's revision, read in the same statement: every page carries it.
            message.session_revision = row[-1]  # type: ignore[attr-defined]
            messages.append(message)
        return messages


def agent_ids(*, limit: int = 100) -> list[str]:
    """The distinct agent ids of all sessions (deleted ones too), ascending, by a loose scan of
    ix_sessions_agent_id: ``Session.all_objects.values_list("agent_id").distinct()``."""
    return distinct_values(Session.all_objects.all(), "agent_id", limit=limit)
