"""Serializer fields shared by several apps' input serializers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.json_text import RawJSON, to_text

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


# DRF's scalar fields coerce: CharField takes 5 and stores "5", IntegerField takes "5",
# BooleanField takes "yes" or 1. The schema says string, integer, boolean; a JSON body that sends
# another type is bad input and gets a 400 naming the field, as the schema promises.


def _check_string(field: serializers.CharField, data: Any) -> None:
    if not isinstance(data, str):
        field.fail("invalid")
    # The schema's maxLength is about what was sent; DRF would trim whitespace first and let
    # 256 characters through a max_length of 255.
    if field.max_length is not None and len(data) > field.max_length:
        field.fail("max_length", max_length=field.max_length)


class StrictCharField(serializers.CharField):
    """A JSON string only, no longer than max_length as sent."""

    def to_internal_value(self, data: Any) -> str:
        _check_string(self, data)
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    """A JSON string holding an email address, no longer than max_length as sent."""

    def to_internal_value(self, data: Any) -> str:
        _check_string(self, data)
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only (``5.0`` counts: JSON Schema calls it an integer)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON ``true`` or ``false`` only."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictUUIDField(serializers.UUIDField):
    """A JSON string holding a UUID (DRF's also takes an integer and makes a UUID of it)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


@dataclass(frozen=True)
class JSONText:
    """A JSON object as parsed and as text (``config.api.json_text.to_text``)."""

    value: dict[str, Any]
    text: str


@extend_schema_field({"type": "object", "additionalProperties": True, "nullable": True})
class JSONTextObjectField(serializers.Field):
    """A JSON object kept as text, its numbers spelled and its keys ordered as sent; at most
    ``max_bytes`` of UTF-8 text. The validated value is a ``JSONText``. Needs a body parsed by
    ``config.api.parsers.ItemJSONParser`` for the spelling of numbers to survive."""

    default_error_messages = {
        "not_an_object": "Must be a JSON object.",
        "too_large": "Must be at most {max_kib} KiB as JSON text.",
    }

    def __init__(self, *, max_bytes: int, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> JSONText:
        if not isinstance(data, dict):
            self.fail("not_an_object")
        text = to_text(data)
        if len(text) > self.max_bytes or len(text.encode()) > self.max_bytes:
            self.fail("too_large", max_kib=self.max_bytes // 1024)
        return JSONText(value=data, text=text)

    def to_representation(self, value: Any) -> Any:
        return RawJSON(value) if isinstance(value, str) else value
