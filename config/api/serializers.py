"""Serializers that work out their fields once per class instead of once per request.

Input (``PrototypeFieldsMixin``, at the end): DRF deep-copies every declared field for every
instance; here a prototype is deep-copied once and each instance gets shallow clones of it.

Output:

A ``ModelSerializer`` introspects its model and constructs a fresh field object for every
field each time it is instantiated, and each field's ``to_representation`` then looks up
settings and the current time zone per value: for a page of 50 messages that cost more than
the query that fetched them (bench/profile.py). An output serializer's fields are the same
for every response, so here they are built once, from a context-free prototype, and turned
into a plan: for the common field types (UUIDs, foreign keys as ids, aware datetimes in ISO
8601, choices, strings, numbers, booleans, JSON) the value is read and formatted directly,
exactly as DRF would format it; any other field goes through DRF's own
``get_attribute``/``to_representation``. ``tests/api/test_output_serializers.py`` pins the
output to DRF's, field for field. An output serializer's ``.fields`` (which drf-spectacular
reads for the schema) are DRF's own.

Only for read-only output serializers whose fields don't read ``self.context`` (no
hyperlinks, no method fields that look at the request).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property
from rest_framework import ISO_8601, relations, serializers
from rest_framework.settings import api_settings
from rest_framework.utils.serializer_helpers import BindingDict

from config.api.fields import JSONTextObjectField

_MISSING = object()
# (field name, attribute to read or None for DRF's own path, formatter or None, whether the
# formatter takes the current time zone as its second argument, the field)
Step = tuple[str, str | None, Callable[..., Any] | None, bool, serializers.Field[Any, Any, Any, Any]]


def _datetime(field: serializers.DateTimeField) -> Callable[[Any, tzinfo], Any]:
    def represent(value: Any, zone: tzinfo) -> Any:
        if isinstance(value, str) or not timezone.is_aware(value):
            return field.to_representation(value)
        # DRF: enforce_timezone (the current zone), isoformat, "+00:00" written as "Z".
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return represent


def _formatter(field: serializers.Field) -> tuple[str, Callable[..., Any] | None] | None:
    """(attribute to read, formatter or None for as-is), or None when DRF must handle the field;
    a datetime's formatter (``_datetime``) also takes the current time zone."""
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
    if type(field) is JSONTextObjectField:
        return attr, field.to_representation
    return None


class FrozenListSerializer(serializers.ListSerializer):
    """DRF's list of a frozen serializer's items, with the current time zone looked up once for
    the page instead of once per datetime (a thread- and task-local lookup through asgiref: on a
    page of 50 messages it cost more than formatting the dates)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # DRF binds the child to the list, and the list holds the page: a reference cycle that
        # only the garbage collector frees, with every row of the page in it. The child reaches
        # its parent (root, context) through a weak reference instead, and the page is freed
        # when the response is.
        assert self.child is not None  # DRF asserts it too
        self.child.parent = weakref.proxy(self)

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        iterable = data.all() if isinstance(data, models.manager.BaseManager) else data
        child = self.child
        assert isinstance(child, FrozenFieldsModelSerializer)
        zone = timezone.get_current_timezone()
        represent = child._representer()
        return [represent(item, zone) for item in iterable]


class FrozenFieldsModelSerializer(serializers.ModelSerializer):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        meta = cls.__dict__.get("Meta")
        if meta is not None and not hasattr(meta, "list_serializer_class"):
            meta.list_serializer_class = FrozenListSerializer  # many=True: the zone once a page

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
                if fast is None:
                    steps.append((name, None, None, False, field))
                else:
                    attr, format_value = fast
                    zoned = isinstance(field, serializers.DateTimeField) and format_value is not None
                    steps.append((name, attr, format_value, zoned, field))
            plan = tuple(steps)
            setattr(cls, "_frozen_plan", plan)  # noqa: B010 (one plan per class, not inherited)
        return plan

    @classmethod
    def _representer(cls) -> Callable[[Any, tzinfo], dict[str, Any]]:
        representer: Callable[[Any, tzinfo], dict[str, Any]] | None = cls.__dict__.get("_frozen_representer")
        if representer is None:
            representer = _compile(cls._plan(), cls.__qualname__)
            setattr(cls, "_frozen_representer", representer)  # noqa: B010 (one per class, not inherited)
        return representer

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return self._representer()(instance, timezone.get_current_timezone())


def _drf_value(result: dict[str, Any], name: str, field: serializers.Field, instance: Any) -> None:
    """DRF's own path for a field the plan has no formatter for."""
    try:
        attribute = field.get_attribute(instance)
    except serializers.SkipField:
        return
    check = attribute.pk if isinstance(attribute, relations.PKOnlyObject) else attribute
    result[name] = None if check is None else field.to_representation(attribute)


def _missing_value(result: dict[str, Any], name: str, field: serializers.Field, instance: Any) -> None:
    """An attribute the instance lacks: DRF decides (the field's default, None, or left out)."""
    try:
        value = field.get_attribute(instance)
    except serializers.SkipField:
        return
    result[name] = None if value is None else field.to_representation(value)


def _compile(plan: tuple[Step, ...], label: str) -> Callable[[Any, tzinfo], dict[str, Any]]:
    """The plan as one straight-line function, a statement per field, instead of a loop that
    unpacks and branches per field: a page of 50 messages runs it 50 times over 11 fields, and
    the loop cost more than the formatting (bench/README.md). The code is made from the plan's
    field and attribute names (model and serializer field names, Python identifiers) and its
    formatters are passed in, not spelled; tests/api/test_output_serializers.py holds every
    frozen serializer's output to DRF's."""
    scope: dict[str, Any] = {"MISSING": _MISSING, "drf": _drf_value, "missing": _missing_value}
    lines = ["def represent(instance, zone):", "    result = {}"]
    for i, (name, attr, format_value, zoned, field) in enumerate(plan):
        if not name.isidentifier() or (attr is not None and not attr.isidentifier()):
            raise ValueError(f"{label}: field {name!r} ({attr!r}) is not an identifier")
        scope[f"field{i}"], scope[f"format{i}"] = field, format_value
        if attr is None:
            lines.append(f"    drf(result, {name!r}, field{i}, instance)")
            continue
        lines += [
            f"    value = getattr(instance, {attr!r}, MISSING)",
            "    if value is MISSING:",
            f"        missing(result, {name!r}, field{i}, instance)",
        ]
        if format_value is None:
            lines.append(f"    else:\n        result[{name!r}] = value")
        else:
            call = f"format{i}(value, zone)" if zoned else f"format{i}(value)"
            lines.append(f"    else:\n        result[{name!r}] = None if value is None else {call}")
    lines.append("    return result")
    exec(compile("\n".join(lines), f"<{label} representation>", "exec"), scope)  # noqa: S102 (see above)
    representer: Callable[[Any, tzinfo], dict[str, Any]] = scope["represent"]
    return representer


# --- input serializers: fields cloned from a prototype, not rebuilt ----------------------------


_PER_INSTANCE = ("fields", "_validated_data", "_errors", "_data", "initial_data")


def _clone(field: serializers.Field[Any, Any, Any, Any]) -> serializers.Field[Any, Any, Any, Any]:
    """A copy of an unbound prototype field for one serializer instance: its own object (bound to
    the new parent by DRF as usual), its children copied and re-parented, nothing a validation
    writes shared. The arguments it was made with are not run again."""
    # copy.copy without its __reduce_ex__ round: a new object of the class holding the same
    # attributes (a field's state is its __dict__; DRF's Field.__new__ only records the
    # arguments, which the dict already holds).
    new = object.__new__(type(field))
    state = new.__dict__
    state.update(field.__dict__)
    # A nested serializer's fields and validation state belong to the copy, built on first use.
    for attr in _PER_INSTANCE:
        state.pop(attr, None)
    child = field.__dict__.get("child")
    if child is not None:  # ListField, DictField, ListSerializer: bound to the field at init
        new.child = _clone(child)  # type: ignore[attr-defined]
        new.child.parent = new  # type: ignore[attr-defined]  # bind() would set the same name and source
    return new


class PrototypeFieldsMixin(serializers.Serializer):
    """DRF deep-copies every declared field for every serializer instance (``get_fields``), which
    re-runs each field's ``__init__`` with deep-copied arguments: a sixth of an append's time
    (bench/README.md). Here the deep copy is made once per class, as a prototype that is never
    bound, and each instance gets shallow copies of it (``_clone``), which DRF then binds to the
    instance as it binds its own copies.

    A top-level instance with no context, not partial, whose fields read neither (no default or
    validator that asks for its context, no hidden field), does not even need copies: its fields
    would be bound to an instance that differs from a bare one only in the data it validates,
    which DRF passes to each field as an argument. Such instances share one set of fields, bound
    once per class to a bare instance (``_shared_fields``): the clones and their binding were half
    of an append's validation (bench/README.md, "Sixth round"). Validation writes nothing on a
    field (the validators list a field makes on first use is the same for everyone).

    tests/api/test_input_serializers.py holds validation (data and errors, nested, partial,
    context) to DRF's own ``get_fields``."""

    @classmethod
    def _prototype_fields(cls) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        prototype: dict[str, serializers.Field[Any, Any, Any, Any]] | None = cls.__dict__.get("_field_prototype")
        if prototype is None:
            prototype = copy.deepcopy(cls._declared_fields)  # made by DRF's metaclass
            setattr(cls, "_field_prototype", prototype)  # noqa: B010 (one per class, not inherited)
        return prototype

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        return {name: _clone(field) for name, field in self._prototype_fields().items()}

    @cached_property
    def fields(self) -> BindingDict:
        if self.parent is None and not self.partial and not self._context:
            shared = type(self)._shared_fields()
            if shared is not None:
                return shared
        return super().fields

    @classmethod
    def _shared_fields(cls) -> BindingDict | None:
        """The fields every context-free, non-partial top-level instance shares, or None where a
        field reads its serializer's context (they are then bound per instance)."""
        if "_bound_fields" not in cls.__dict__:
            bare = cls()
            fields = serializers.Serializer.fields.func(bare)  # type: ignore[attr-defined]  # bound per instance
            setattr(cls, "_bound_fields", None if any(map(_reads_context, fields.values())) else fields)  # noqa: B010
        shared: BindingDict | None = cls.__dict__["_bound_fields"]
        return shared


def _reads_context(field: serializers.Field[Any, Any, Any, Any]) -> bool:
    """Whether ``field``, or a field inside it, reads its serializer: a default or a validator
    made with ``requires_context`` (the current user, unique checks), a hidden field."""
    if isinstance(field, serializers.HiddenField):
        return True
    parts = [field.default, *field.validators]
    if any(getattr(part, "requires_context", False) for part in parts):
        return True
    inner = [field.child] if getattr(field, "child", None) is not None else []  # type: ignore[attr-defined]
    if isinstance(field, serializers.Serializer):
        inner += list(field.fields.values())
    return any(map(_reads_context, inner))
