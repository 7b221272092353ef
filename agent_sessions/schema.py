"""The OpenAPI description of a message to append: ``role`` and ``content``, or an ``item``.

The serializer's fields are all optional because either pair may be left out, but not both; the
schema says so (``anyOf``), so a schema-valid message is one the API accepts.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension


class MessageCreateScheme(OpenApiSerializerExtension):
    target_class = "agent_sessions.serializers.MessageCreateSerializer"
    match_subclasses = True  # MessageAppendSerializer too

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        schema["anyOf"] = [
            {"required": ["role", "content"]},
            {"required": ["item"], "properties": {"item": {"type": "object"}}},
        ]
        return schema
