"""SQL expressions the ORM lacks, for writes that must not race."""

from __future__ import annotations

from typing import Any

from django.db.models import F, Func, JSONField, Value


def jsonb_merge(field: str, values: dict[str, Any]) -> Func:
    """``field || values``: the JSON object column with ``values``' keys set (a shallow merge,
    like ``{**old, **values}``), computed by PostgreSQL on the row it updates.

    The one way a JSON object column is merged into: an UPDATE that uses it cannot lose a
    concurrent merge of other keys, as a read-modify-write in Python could.
    """
    return Func(
        F(field),
        Value(values, output_field=JSONField()),
        template="%(expressions)s",
        arg_joiner=" || ",
        output_field=JSONField(),
    )
