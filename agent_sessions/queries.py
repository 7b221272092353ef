"""A session's messages page by page, as DRF's cursor pagination asks for them.

``CursorPagination`` does three things with a queryset: ``order_by("sequence")`` (or
``"-sequence"`` for a previous page), ``filter(sequence__gt=position)`` (or ``__lt``) and a
slice. ``MessagePage`` answers exactly those with SQL compiled once per shape (config.precompiled)
instead of the ORM compiling a join, a filter and an ordering on every request, which was
half of a message page's time in process (bench/profile.py). DRF's own cursor logic (positions,
offsets, previous and next links) runs unchanged on top.

The statement is the one the ORM sent: the session's messages, joined to the session so that a
soft-deleted session shows nothing and, for a non-admin, another user's session shows nothing,
walking the (session_id, sequence) unique index.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, replace

from agent_sessions.models import Message, Session
from config.precompiled import RowLoader, fetch_rows

_OPERATORS = {"sequence__gt": ">", "sequence__lt": "<"}


@functools.cache
def _page_query(descending: bool, operator: str | None, owned: bool) -> tuple[str, RowLoader]:
    m, s = RowLoader(Message, "m"), RowLoader(Session, "s")
    conditions = [f"{m.column('session')} = %s", f"{s.column('deleted_at')} IS NULL"]
    if owned:
        conditions.append(f"{s.column('user')} = %s")
    if operator:
        conditions.append(f"{m.column('sequence')} {operator} %s")
    sql = (
        f"SELECT {', '.join(m.columns)} FROM {m.table} "  # noqa: S608 (identifiers from model metadata)
        f"JOIN {s.table} ON {s.column('id')} = {m.column('session')} "
        f"WHERE {' AND '.join(conditions)} "
        f"ORDER BY {m.column('sequence')} {'DESC' if descending else 'ASC'} LIMIT %s OFFSET %s"
    )
    return sql, m


@dataclass(frozen=True)
class MessagePage:
    session_id: uuid.UUID
    owner_id: uuid.UUID | None  # None: any owner (an admin's request)
    descending: bool = False
    bound: tuple[str, int] | None = None

    model = Message  # what the pagination reads to validate cursor positions

    def order_by(self, *ordering: str) -> MessagePage:
        if ordering not in (("sequence",), ("-sequence",)):
            raise ValueError(f"messages are ordered by sequence, not {ordering!r}")
        return replace(self, descending=ordering[0].startswith("-"))

    def filter(self, **lookup: object) -> MessagePage:
        ((name, value),) = lookup.items()
        return replace(self, bound=(_OPERATORS[name], int(str(value))))

    def __getitem__(self, bounds: slice) -> list[Message]:
        offset = bounds.start or 0
        if bounds.stop is None or bounds.step is not None or offset < 0:
            raise ValueError("a message page is a bounded slice")
        sql, loader = _page_query(self.descending, self.bound[0] if self.bound else None, self.owner_id is not None)
        params: list[object] = [self.session_id]
        if self.owner_id is not None:
            params.append(self.owner_id)
        if self.bound:
            params.append(self.bound[1])
        params += [bounds.stop - offset, offset]
        return fetch_rows(sql, params, loader)
