"""Serializer fields shared by several apps' input serializers."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

MAX_JSON_OBJECT_BYTES = 64 * 1024


class JSONObjectField(serializers.DictField):
    """A JSON object (not a list or a scalar), at most 64 KiB once serialized."""

    default_error_messages = {
        "too_large": f"Must be at most {MAX_JSON_OBJECT_BYTES // 1024} KiB once serialized.",
    }

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if len(json.dumps(value, separators=(",", ":"))) > MAX_JSON_OBJECT_BYTES:
            self.fail("too_large")
        return value
