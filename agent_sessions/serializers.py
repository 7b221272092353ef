from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from agent_sessions.models import Message, Session
from config.api.fields import (
    JSONObjectField,
    JSONTextObjectField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictUUIDField,
)
from config.api.serializers import FrozenFieldsModelSerializer, PrototypeFieldsMixin


class SessionOutputSerializer(FrozenFieldsModelSerializer):
    is_active = serializers.BooleanField(read_only=True)
    is_expired = serializers.BooleanField(read_only=True)

    class Meta:
        model = Session
        fields = [
            "id",
            "user",
            "agent_id",
            "title",
            "status",
            "context",
            "metadata",
            "total_messages",
            "total_tokens",
            "last_activity_at",
            "expires_at",
            "created_at",
            "updated_at",
            "is_active",
            "is_expired",
            "revision",
            "external_id",
            "idle_expiry",
        ]
        read_only_fields = fields


class SessionCreateSerializer(serializers.Serializer):
    agent_id = StrictCharField(max_length=255, min_length=1)
    title = StrictCharField(max_length=500, min_length=1)
    context = JSONObjectField(required=False, default=dict)  # type: ignore[assignment]  # a field named like Field.context
    metadata = JSONObjectField(required=False, default=dict)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    external_id = StrictCharField(
        max_length=255,
        min_length=1,
        required=False,
        default=None,
        help_text="Your own name for the conversation: unique per owner and agent among live sessions.",
    )
    idle_expiry = StrictBooleanField(
        required=False,
        default=True,
        help_text="false: the session never expires for idleness (expire_sessions), only at expires_at.",
    )


class SessionUpdateSerializer(serializers.Serializer):
    title = StrictCharField(max_length=500, min_length=1, required=False)
    context = JSONObjectField(required=False, help_text="Keys merged into the session's context.")  # type: ignore[assignment]
    metadata = JSONObjectField(required=False, help_text="Keys merged into the session's metadata.")


class SessionCompleteSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")


class SessionFailSerializer(serializers.Serializer):
    error = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")


class SessionCancelSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")


class SessionTransferSerializer(serializers.Serializer):
    user = StrictUUIDField(help_text="The new owner's id.")


class SessionStatsSerializer(serializers.Serializer):
    total_sessions = serializers.IntegerField()
    active_sessions = serializers.IntegerField()
    total_messages = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    avg_messages_per_session = serializers.FloatField()


class MessageOutputSerializer(FrozenFieldsModelSerializer):
    # The stored JSON text, embedded verbatim by config.api.renderers.RawJSONRenderer.
    item = JSONTextObjectField(max_bytes=settings.MESSAGE_MAX_ITEM_BYTES, read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
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
        read_only_fields = fields


class MessageCreateSerializer(PrototypeFieldsMixin):
    """One message. With ``item`` (any JSON object, kept as sent), ``role`` and ``content`` may be
    left out: the service projects them from the item (agent_sessions.items)."""

    role = serializers.ChoiceField(choices=Message.Role.choices, required=False)
    content = StrictCharField(
        allow_blank=True, trim_whitespace=False, max_length=settings.MESSAGE_MAX_CONTENT_CHARS, required=False
    )
    tool_calls = serializers.ListField(
        child=JSONObjectField(), max_length=128, required=False, allow_null=True, default=None
    )
    metadata = JSONObjectField(required=False, default=dict)
    token_count = StrictIntegerField(min_value=0, max_value=10_000_000, default=0)
    kind = StrictCharField(max_length=64, min_length=1, required=False)
    item = JSONTextObjectField(
        max_bytes=settings.MESSAGE_MAX_ITEM_BYTES,
        required=False,
        allow_null=True,
        default=None,
        help_text="Any JSON object, returned exactly as sent (key order, number spelling, \\u0000).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("item") is None:
            missing = {name: [self.error_messages["required"]] for name in ("role", "content") if name not in attrs}
            if missing:
                raise serializers.ValidationError(missing)
        return attrs


class RevisionFieldsMixin(PrototypeFieldsMixin):
    expected_revision = StrictIntegerField(
        min_value=0,
        required=False,
        default=None,
        help_text="Refused (409 revision_mismatch) unless the session is at it.",
    )


class MessageAppendSerializer(MessageCreateSerializer, RevisionFieldsMixin):
    """The single append: one message's fields, plus the batch's conditions."""

    state_delta = JSONObjectField(required=False, default=None, help_text="Keys merged into the session's context.")


class MessageBatchSerializer(RevisionFieldsMixin):
    """Append 1-100 messages in order, all or none, with the batch's conditions."""

    messages = serializers.ListField(child=MessageCreateSerializer(), min_length=1, max_length=100)
    state_delta = JSONObjectField(required=False, default=None, help_text="Keys merged into the session's context.")


class MessagePopSerializer(RevisionFieldsMixin):
    """Remove the session's newest messages."""

    count = StrictIntegerField(min_value=1, max_value=100, default=1)


class MessageClearSerializer(RevisionFieldsMixin):
    """Remove all of the session's messages."""
