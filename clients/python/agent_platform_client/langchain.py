"""LangChain's ``BaseChatMessageHistory`` over the platform (extra ``langchain``).

Each LangChain message is stored whole as its ``message_to_dict`` form in the message's ``item``
with kind ``langchain:<type>`` (``langchain:human``, ``langchain:ai``, ...), so it reads back
equal; ``role`` and ``content`` carry a readable projection for staff and search.
``add_messages`` is one atomic request; the ``a*`` methods are natively async.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

from agent_platform_client._calls import MAX_BATCH
from agent_platform_client.client import AsyncClient, Client
from agent_platform_client.types import Message

KIND_PREFIX = "langchain:"
# The service's default MESSAGE_MAX_CONTENT_CHARS: the projection is for reading, the item is whole.
CONTENT_PROJECTION_CHARS = 100_000
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}
_PLATFORM_ROLES = frozenset({"user", "assistant", "system", "tool"})


def _role(message: BaseMessage) -> str:
    if message.type == "chat":
        role = getattr(message, "role", "")
        return role if role in _PLATFORM_ROLES else "user"
    return _ROLES.get(message.type, "user")


def message_of(message: BaseMessage) -> dict[str, Any]:
    """A batch element holding one LangChain message."""
    return {
        "item": message_to_dict(message),
        "kind": f"{KIND_PREFIX}{message.type}"[:64],
        "role": _role(message),
        # The projection is a text column, which cannot hold NUL; the item keeps every character.
        "content": str(message.text).replace("\x00", "")[:CONTENT_PROJECTION_CHARS],
    }


def messages_of(stored: Sequence[Message]) -> list[BaseMessage]:
    """The LangChain messages among stored ones (others' plain messages become chat messages)."""
    dicts: list[dict[str, Any]] = []
    for message in stored:
        item = message.get("item")
        if str(message.get("kind", "")).startswith(KIND_PREFIX) and isinstance(item, dict):
            dicts.append(item)
        else:
            dicts.append({"type": "chat", "data": {"role": message["role"], "content": message["content"]}})
    return messages_from_dict(dicts)


class PlatformChatMessageHistory(BaseChatMessageHistory):
    """``PlatformChatMessageHistory(client, session_id)``: the history of one platform session.

    ``client`` may be a ``Client`` or an ``AsyncClient``; the other kind is made with the same
    settings, so both the blocking and the async methods talk to the service directly.
    """

    def __init__(self, client: Client | AsyncClient, session_id: str) -> None:
        if isinstance(client, AsyncClient):
            self.async_client = client
            self.client = client.to_sync()
        else:
            self.client = client
            self.async_client = client.to_async()
        self.session_id = str(session_id)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return messages_of(list(self.client.messages.iter(self.session_id)))

    async def aget_messages(self) -> list[BaseMessage]:
        return messages_of(await self.async_client.messages.all(self.session_id))

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            self.client.messages.append_batch(self.session_id, _batch(messages))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            await self.async_client.messages.append_batch(self.session_id, _batch(messages))

    def clear(self) -> None:
        self.client.messages.clear(self.session_id)

    async def aclear(self) -> None:
        await self.async_client.messages.clear(self.session_id)


def _batch(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    if len(messages) > MAX_BATCH:
        raise ValueError(f"add_messages takes at most {MAX_BATCH} messages in one atomic write, not {len(messages)}.")
    return [message_of(message) for message in messages]
