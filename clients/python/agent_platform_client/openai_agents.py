"""The OpenAI Agents SDK's ``Session`` protocol over the platform (extra ``openai-agents``).

``PlatformSession`` behaves as the SDK's own ``SQLiteSession`` does: ``get_items(limit)`` gives
the latest ``limit`` items oldest first (``session_settings.limit`` when ``limit`` is None, every
item when both are; 0 gives none, a negative limit every item, as SQLite's ``LIMIT`` does);
``add_items`` writes its whole list in one atomic request (an empty list sends nothing), with
one idempotency key for all its retries; ``pop_item`` on an empty session is None. Items come
back equal to what was added, with the same ``json.dumps`` output, so the SDK's digest checks on
resume hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agents.memory.session_settings import SessionSettings, coerce_session_settings, resolve_session_limit

from agent_platform_client._calls import MAX_BATCH
from agent_platform_client.client import AsyncClient, Client
from agent_platform_client.errors import SessionExists
from agent_platform_client.types import Message

if TYPE_CHECKING:
    from agents.items import TResponseInputItem


def item_of(message: Message) -> TResponseInputItem:
    """The SDK item a stored message holds (a plain message written by another client becomes an
    easy input message)."""
    item = message.get("item")
    if item is not None:
        return item  # type: ignore[return-value]
    easy: dict[str, Any] = {"role": message["role"], "content": message["content"]}
    return easy  # type: ignore[return-value]


def message_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """A batch element for one SDK item; the service projects role and content from it."""
    if not isinstance(item, Mapping):
        raise TypeError(f"a session item is a JSON object, not {type(item).__name__}")
    kind = item.get("type")
    return {"item": dict(item), "kind": kind if isinstance(kind, str) and 1 <= len(kind) <= 64 else "message"}


class PlatformSession:
    """A conversation kept by the platform: ``PlatformSession(client, session_id)`` for an existing
    session, ``await PlatformSession.create(client, agent_id=..., title=...)`` for a new one.

    It implements the SDK's ``Session`` protocol structurally, as the SDK asks of third-party
    sessions: ``isinstance(session, agents.memory.Session)`` holds.
    """

    session_settings: SessionSettings | None = None

    def __init__(
        self,
        client: AsyncClient | Client,
        session_id: str,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        # The SDK awaits every session call, so a blocking Client lends its settings to an async one.
        self.client = client if isinstance(client, AsyncClient) else client.to_async()
        self.session_id = str(session_id)
        self.session_settings = (
            coerce_session_settings(session_settings) if session_settings is not None else SessionSettings()
        )

    @classmethod
    async def create(
        cls,
        client: AsyncClient | Client,
        *,
        agent_id: str,
        title: str,
        external_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> PlatformSession:
        """A new platform session for a long-lived conversation: created with ``idle_expiry``
        off, so it can be resumed after any idle time (``expires_at`` still ends it)."""
        async_client = client if isinstance(client, AsyncClient) else client.to_async()
        fields: dict[str, Any] = {"idle_expiry": False}
        if external_id is not None:
            fields["external_id"] = external_id
        if context is not None:
            fields["context"] = dict(context)
        if metadata is not None:
            fields["metadata"] = dict(metadata)
        created = await async_client.sessions.create(agent_id, title, **fields)
        return cls(async_client, created["id"], session_settings=session_settings)

    @classmethod
    async def get_or_create(
        cls,
        client: AsyncClient | Client,
        *,
        agent_id: str,
        external_id: str,
        title: str,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> PlatformSession:
        """The live session of this agent with this client-chosen ``external_id`` (a ticket, a
        chat thread), made as ``create`` makes one when there is none yet."""
        try:
            return await cls.create(
                client, agent_id=agent_id, title=title, external_id=external_id, session_settings=session_settings
            )
        except SessionExists as exists:
            if exists.session_id is None:
                raise
            return cls(client, exists.session_id, session_settings=session_settings)

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        session_limit = resolve_session_limit(limit, self.session_settings)
        if session_limit is not None and session_limit > 0:
            messages = await self.client.messages.last(self.session_id, session_limit)
        elif session_limit == 0:
            return []
        else:  # None, or negative: SQLite's LIMIT -1 is every row
            messages = await self.client.messages.all(self.session_id)
        return [item_of(message) for message in messages]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        if not items:
            return
        if len(items) > MAX_BATCH:
            # Splitting would break the atomic batch the SDK's resume relies on.
            raise ValueError(f"add_items takes at most {MAX_BATCH} items in one atomic write, not {len(items)}.")
        await self.client.messages.append_batch(self.session_id, [message_of(item) for item in items])

    async def pop_item(self) -> TResponseInputItem | None:
        popped = await self.client.messages.pop(self.session_id, count=1)
        return item_of(popped["messages"][0]) if popped["messages"] else None

    async def clear_session(self) -> None:
        await self.client.messages.clear(self.session_id)

    def __repr__(self) -> str:
        return f"PlatformSession({self.session_id!r})"
