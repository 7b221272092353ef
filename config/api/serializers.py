"""Output serializers that work out their fields once per class instead of once per response.

A ``ModelSerializer`` introspects its model and constructs a fresh field object for every
field each time it is instantiated, and each field's ``to_representation`` then looks up
settings and the current time zone per value: for a page of 50 messages that cost more than
the query that fetched them (bench/profile.py). An output serializer's fields are the same
for every response, so here they are built once, from a context-free prototype, and turned
into a plan: for the common field types (UUIDs, foreign keys as ids, aware datetimes in ISO
8601, choices, strings, numbers, booleans, JSON) the value is read and formatted directly,
exactly as DRF would format it; any other field goes through DRF's own
``get_attribute``/``to_representation``. ``tests/api/test_output_serializers.py`` pins the
output to DRF's, field for field. Input validation and ``.fields`` (which drf-spectacular
reads for the schema) are untouched.

Only for read-only output serializers whose fields don't read ``self.context`` (no
hyperlinks, no method fields that look at the request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils import timezone
from rest_framework import ISO_8601, relations, serializers
from rest_framework.settings import api_settings

_MISSING = object()
# (field name, attribute to read or None for DRF's own path, formatter or None, the field)
Step = tuple[str, str | None, Callable[[Any], Any] | None, serializers.Field[Any, Any, Any, Any]]


def _datetime(field: serializers.DateTimeField) -> Callable[[Any], Any]:
    def represent(value: Any) -> Any:
        if isinstance(value, str) or not timezone.is_aware(value):
            return field.to_representation(value)
        # DRF: enforce_timezone (the current zone), isoformat, "+00:00" written as "Z".
        text = value.astimezone(timezone.get_current_timezone()).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return represent


def _formatter(field: serializers.Field) -> tuple[str, Callable[[Any], Any] | None] | None:
    """(attribute to read, formatter or None for as-is), or None when DRF must handle the field."""
    attrs = field.source_attrs
    if len(attrs) != 1 or field.source == "*":
        return None
    attr = attrs[0]
    if isinstance(field, relations.PrimaryKeyRelatedField):
        if field.pk_field is not None:
            return None
        # DRF reads the raw id (no query) and returns it as is: a UUID, encoded by the renderer.
        return f"{attr}_id", None
    if isinstance(field, serializers.DateTimeField):
        output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
        if output_format not in (None, ISO_8601) or getattr(field, "timezone", None) is not None:
            return None
        if output_format is None:
            return attr, None
        return attr, _datetime(field)
    if isinstance(field, serializers.UUIDField):
        return (attr, str) if field.uuid_format == "hex_verbose" else None
    if isinstance(field, serializers.ChoiceField):
        choices = field.choice_strings_to_values
        return attr, lambda value: choices.get(str(value), value)
    if isinstance(field, serializers.BooleanField):
        return attr, field.to_representation
    if isinstance(field, serializers.IntegerField):
        return attr, int
    if isinstance(field, serializers.FloatField):
        return attr, float
    if isinstance(field, serializers.CharField):
        return attr, str
    if isinstance(field, serializers.JSONField) and not field.binary:
        return attr, None
    return None


class FrozenFieldsModelSerializer(serializers.ModelSerializer):
    @classmethod
    def _plan(cls) -> tuple[Step, ...]:
        plan: tuple[Step, ...] | None = cls.__dict__.get("_frozen_plan")
        if plan is None:
            prototype = cls()
            steps: list[Step] = []
            for field in prototype.fields.values():
                if field.write_only:
                    continue
                fast = _formatter(field)
                name = str(field.field_name)
                steps.append((name, None, None, field) if fast is None else (name, fast[0], fast[1], field))
            plan = tuple(steps)
            setattr(cls, "_frozen_plan", plan)  # noqa: B010 (one plan per class, not inherited)
        return plan

    def to_representation(self, instance: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, attr, format_value, field in self._plan():
            if attr is None:  # DRF's own path for this field
                try:
                    attribute = field.get_attribute(instance)
                except serializers.SkipField:
                    continue
                check = attribute.pk if isinstance(attribute, relations.PKOnlyObject) else attribute
                result[name] = None if check is None else field.to_representation(attribute)
                continue
            value = getattr(instance, attr, _MISSING)
            if value is _MISSING:  # DRF decides: the field's default, None, or left out
                try:
                    value = field.get_attribute(instance)
                except serializers.SkipField:
                    continue
                result[name] = None if value is None else field.to_representation(value)
                continue
            if value is not None and format_value is not None:
                value = format_value(value)
            result[name] = value
        return result
