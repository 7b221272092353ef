"""The shapes the service answers with (plain dicts, typed for editors and type checkers)."""

from __future__ import annotations

from typing import Any, TypedDict


class Session(TypedDict, total=False):
    id: str
    user: str
    agent_id: str
    title: str
    status: str
    context: dict[str, Any]
    metadata: dict[str, Any]
    total_messages: int
    total_tokens: int
    revision: int
    external_id: str | None
    idle_expiry: bool
    last_activity_at: str
    expires_at: str | None
    created_at: str
    updated_at: str
    is_active: bool
    is_expired: bool


class Message(TypedDict, total=False):
    id: str
    session: str
    sequence: int
    role: str
    content: str
    kind: str
    item: dict[str, Any] | None
    tool_calls: list[dict[str, Any]] | None
    metadata: dict[str, Any]
    token_count: int
    created_at: str


class AppendResult(Message, total=False):
    revision: int


class SessionPage(TypedDict):
    count: int
    next: str | None
    previous: str | None
    results: list[Session]


class MessagePage(TypedDict):
    next: str | None
    previous: str | None
    results: list[Message]
    revision: int


class BatchResult(TypedDict):
    messages: list[Message]
    revision: int


class PopResult(TypedDict):
    messages: list[Message]
    revision: int


class ClearResult(TypedDict):
    removed: int
    revision: int
