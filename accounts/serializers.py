from __future__ import annotations

from rest_framework import serializers

from accounts.models import MAX_GROUP_LENGTH, User
from accounts.roles import Role
from config.api.fields import StrictBooleanField, StrictCharField, StrictEmailField
from config.api.serializers import FrozenFieldsModelSerializer


class UserOutputSerializer(FrozenFieldsModelSerializer):
    is_oauth_user = serializers.BooleanField(read_only=True)

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "name",
            "provider",
            "provider_user_id",
            "roles",
            "groups",
            "is_active",
            "is_staff",
            "is_superuser",
            "is_oauth_user",
            "last_login",
            "created_at",
            "updated_at",
            "deleted_at",
        ]
        read_only_fields = fields


def _roles_field() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=Role.choices), max_length=len(Role.values), required=False
    )


def _groups_field() -> serializers.ListField:
    return serializers.ListField(
        child=StrictCharField(max_length=MAX_GROUP_LENGTH, min_length=1), max_length=50, required=False
    )


class UserCreateSerializer(serializers.Serializer):
    email = StrictEmailField(max_length=255)
    name = StrictCharField(max_length=255, min_length=1)
    provider = serializers.ChoiceField(choices=User.Provider.choices, default=User.Provider.LOCAL)
    provider_user_id = StrictCharField(max_length=255, required=False, allow_blank=True, default="")
    roles = _roles_field()
    groups = _groups_field()
    password = StrictCharField(
        write_only=True, required=False, max_length=128, trim_whitespace=False, style={"input_type": "password"}
    )
    is_active = StrictBooleanField(default=True)


class UserUpdateSerializer(serializers.Serializer):
    email = StrictEmailField(max_length=255, required=False)
    name = StrictCharField(max_length=255, min_length=1, required=False)
    provider = serializers.ChoiceField(choices=User.Provider.choices, required=False)
    provider_user_id = StrictCharField(max_length=255, min_length=1, required=False)
    roles = _roles_field()
    groups = _groups_field()
    password = StrictCharField(
        write_only=True, required=False, max_length=128, trim_whitespace=False, style={"input_type": "password"}
    )
    is_active = StrictBooleanField(required=False)
