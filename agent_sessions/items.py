"""What staff and search see of a message that carries an ``item``: its readable projections.

An item is whatever an agent framework stores (an OpenAI Agents SDK item, a LangChain message):
kept as its JSON text, untouched. The columns ``role``, ``content`` and ``kind`` are derived from
it when the client leaves them out, by one rule:

* role: ``item["role"]`` when it is one of ours; else ``tool`` for an ``*_output`` item (a tool's
  answer); else ``assistant`` (function calls, reasoning: the model's doing);
* content: the item's text: ``content`` when a string; the ``text`` of each part of a ``content``
  list, joined by newlines; else ``output`` when a string; else the ``text`` of each part of a
  ``summary`` list (reasoning); else empty. Cut to MESSAGE_MAX_CONTENT_CHARS, without the
  characters PostgreSQL text cannot hold (the item keeps them);
* kind: ``item["type"]`` when a string of 1 to 64 characters that text can hold, else ``message``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from agent_sessions.models import Role
from config.db.text import is_storable, storable

DEFAULT_KIND = "message"


def item_role(item: dict[str, Any]) -> str:
    role = item.get("role")
    if isinstance(role, str) and role in Role.values:
        return role
    kind = item.get("type")
    if isinstance(kind, str) and kind.endswith("_output"):
        return Role.TOOL
    return Role.ASSISTANT


def _texts(parts: Any) -> str | None:
    if not isinstance(parts, list):
        return None
    texts = [part["text"] for part in parts if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return "\n".join(texts)


def item_content(item: dict[str, Any]) -> str:
    content = item.get("content")
    text: str | None = content if isinstance(content, str) else _texts(content)
    if not text and isinstance(item.get("output"), str):
        text = item["output"]
    if not text:
        text = _texts(item.get("summary"))
    return storable(text or "", settings.MESSAGE_MAX_CONTENT_CHARS) or ""


def item_kind(item: dict[str, Any]) -> str:
    kind = item.get("type")
    if isinstance(kind, str) and 1 <= len(kind) <= 64 and is_storable(kind):
        return kind
    return DEFAULT_KIND
