from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from agent_sessions.models import Message, Session
from config.api.fields import JSONObjectField, StrictCharField, StrictIntegerField, StrictUUIDField
from config.api.serializers import FrozenFieldsModelSerializer


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
        ]
        read_only_fields = fields


class SessionCreateSerializer(serializers.Serializer):
    agent_id = StrictCharField(max_length=255, min_length=1)
    title = StrictCharField(max_length=500, min_length=1)
    context = JSONObjectField(required=False, default=dict)  # type: ignore[assignment]  # a field named like Field.context
    metadata = JSONObjectField(required=False, default=dict)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


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
    class Meta:
        model = Message
        fields = ["id", "session", "sequence", "role", "content", "tool_calls", "metadata", "token_count", "created_at"]
        read_only_fields = fields


class MessageCreateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Message.Role.choices)
    content = StrictCharField(allow_blank=True, trim_whitespace=False, max_length=settings.MESSAGE_MAX_CONTENT_CHARS)
    tool_calls = serializers.ListField(
        child=JSONObjectField(), max_length=128, required=False, allow_null=True, default=None
    )
    metadata = JSONObjectField(required=False, default=dict)
    token_count = StrictIntegerField(min_value=0, max_value=10_000_000, default=0)
