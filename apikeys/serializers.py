from __future__ import annotations

from rest_framework import serializers

from apikeys.models import APIKey
from config.api.fields import StrictCharField, StrictIntegerField, StrictUUIDField
from config.api.serializers import FrozenFieldsModelSerializer


class APIKeyOutputSerializer(FrozenFieldsModelSerializer):
    """What a list or detail shows: never the key or its hash."""

    revoked_at = serializers.DateTimeField(source="deleted_at", read_only=True, allow_null=True)
    is_active = serializers.BooleanField(read_only=True)
    is_expired = serializers.BooleanField(read_only=True)
    state = serializers.ChoiceField(choices=["active", "expired", "revoked"], read_only=True)

    class Meta:
        model = APIKey
        fields = [
            "id",
            "user",
            "name",
            "key_prefix",
            "key_hint",
            "scopes",
            "rate_limit_tier",
            "expires_at",
            "last_used_at",
            "created_at",
            "updated_at",
            "revoked_at",
            "is_active",
            "is_expired",
            "state",
        ]
        read_only_fields = fields


class APIKeyCreatedSerializer(APIKeyOutputSerializer):
    """The one response that carries the raw key."""

    key = serializers.CharField(read_only=True, help_text="The raw key. Shown this once; store it now.")
    rotated_from = serializers.UUIDField(read_only=True, required=False, allow_null=True)
    old_key_expires_at = serializers.DateTimeField(read_only=True, required=False, allow_null=True)

    class Meta(APIKeyOutputSerializer.Meta):
        fields = [*APIKeyOutputSerializer.Meta.fields, "key", "rotated_from", "old_key_expires_at"]
        read_only_fields = fields


class APIKeyCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=255, min_length=1)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=APIKey.Scope.choices), min_length=1, max_length=3, default=["read"]
    )
    rate_limit_tier = serializers.ChoiceField(choices=APIKey.Tier.choices, default=APIKey.Tier.FREE)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    user = StrictUUIDField(required=False, help_text="Owner (admins only; others always get their own).")


class APIKeyRotateSerializer(serializers.Serializer):
    grace_period_seconds = StrictIntegerField(
        min_value=0,
        max_value=30 * 24 * 3600,
        default=0,
        help_text="How long the old key keeps working (default 0: it stops at once).",
    )
