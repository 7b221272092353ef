"""Building blocks for the few hand-written statements: SQL text built once per process from
the models' own metadata, values always bound as parameters, rows turned back into ordinary
model instances.

Why hand-written at all: the ORM compiles every query to SQL on each execution, and for a
one-row lookup by primary key that costs more Python time than the round trip to PostgreSQL
(``bench/profile.py`` showed it on the key-and-owner lookup of every request, one session's
fetch, and message pages). The statements themselves live in each app's ``queries.py`` (reads)
or model manager (writes), each tested against the queryset it stands in for.

* ``ModelColumns``: a model's concrete columns, qualified by its table name, and how a row of
  them becomes an instance (the same converters and ``Model.from_db`` the ORM uses).
* ``where_sql``: a ``Q`` compiled to SQL by the ORM itself, so a rule such as "a live row" or
  "an active session" is written once, as a ``Q``, and hand-written statements embed it.
* ``select_one`` / ``select_all``: run a SELECT over some ``ModelColumns`` and load the rows.
* ``distinct_values``: the distinct values of an indexed column by a loose index scan.
* ``array_literal``: a list of values as the text of a PostgreSQL array, for ``%s::type[]``.

The statements run on ``statement_cursor``: prepared on the server in pool and persistent
modes (config.db.backend), so PostgreSQL parses and plans each once per connection; Django's own
client-side binding behind PgBouncer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.models import Field, JSONField, Model, Q, QuerySet, signals
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.sql import Query


def column_name(model: type[Model], field_name: str) -> str:
    """The quoted column of one of ``model``'s concrete fields (``user`` -> ``"user_id"``)."""
    field = model._meta.get_field(field_name)
    if not isinstance(field, Field) or not field.column:
        raise ValueError(f"{model.__name__}.{field_name} is not a column")
    return connections[DEFAULT_DB_ALIAS].ops.quote_name(field.column)


_LONG_NUMBER = re.compile(r"[0-9]{19}")


def load_json(text: Any, expression: Any = None, connection: Any = None) -> Any:
    """What ``JSONField.from_db_value`` returns for a column's JSON text (no decoder of its own),
    parsed by orjson where orjson reads it the same: not where a run of 19 digits may be an
    integer past 64 bits (orjson makes it a float) and not where orjson refuses the text (a
    number past a double's range, a lone surrogate), which the standard library reads.
    tests/config/test_raw_select.py holds the two to each other."""
    if text is None or not isinstance(text, str):
        return text
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # as JSONField.from_db_value


def _fast_json_converters(field: Any, converters: list[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """A JSON column's converter with ``load_json`` in place of Django's ``json.loads`` (a page
    of 50 messages parses two JSON columns a row: bench/README.md)."""
    if isinstance(field, JSONField) and field.decoder is None and converters == [field.from_db_value]:
        return [load_json]
    return converters


class ModelColumns:
    """All concrete columns of one model, as ``"table"."column"``, and how to load a row of them."""

    def __init__(self, model: type[Model]) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        self.model = model
        self.table = connection.ops.quote_name(model._meta.db_table)
        fields: list[Any] = list(model._meta.concrete_fields)
        self.attnames = [field.attname for field in fields]
        self.columns = [f"{self.table}.{connection.ops.quote_name(field.column)}" for field in fields]
        self.converters: list[tuple[Any, list[Callable[..., Any]]]] = [
            (field, _fast_json_converters(field, field.get_db_converters(connection))) for field in fields
        ]
        # Only some columns have converters (JSON's from_db_value; none for UUIDs, dates, text).
        self._converting = [
            (i, field, converters) for i, (field, converters) in enumerate(self.converters) if converters
        ]
        # Whether Model.__init__ would only store each value: every column's class attribute is
        # Django's plain deferred attribute (or a foreign key's, which also clears a cached
        # related object that a new instance cannot have).
        self._plain_attributes = all(
            type(model.__dict__.get(field.attname)) in (DeferredAttribute, ForeignKeyDeferredAttribute)
            for field in fields
        )

    def column(self, field_name: str) -> str:
        """A field's column, qualified by the table: ``"sessions"."user_id"`` for ``user``."""
        return f"{self.table}.{column_name(self.model, field_name)}"

    @property
    def select_list(self) -> str:
        return ", ".join(self.columns)

    def load(self, values: Sequence[Any]) -> Model:
        return self.loader()(values)

    def loader(self) -> Callable[[Sequence[Any]], Model]:
        """``load`` for a batch of rows: the connection, the columns that need converting and
        whether the model has init listeners are looked up once, not once per row (on a page of
        50 messages the per-row lookups cost a twentieth of the request)."""
        connection = connections[DEFAULT_DB_ALIAS]
        model, attnames = self.model, self.attnames
        converting = self._converting

        def convert(values: Sequence[Any]) -> list[Any]:
            converted = list(values)
            for i, field, converters in converting:
                value = converted[i]
                for converter in converters:
                    value = converter(value, field, connection)
                converted[i] = value
            return converted

        if (
            not self._plain_attributes
            or signals.pre_init.has_listeners(model)
            or signals.post_init.has_listeners(model)
        ):
            return lambda values: model.from_db(DEFAULT_DB_ALIAS, attnames, convert(values))

        def load(values: Sequence[Any]) -> Model:
            # What Model.from_db does for a full row, without __init__'s per-field bookkeeping (a
            # tenth of a 50-message page): the values stored, the state of a row loaded from the
            # database. tests/config/test_raw_select.py compares the two, attribute for attribute.
            instance = model.__new__(model)
            instance.__dict__.update(zip(attnames, convert(values), strict=True))
            state = ModelState()
            state.adding = False
            state.db = DEFAULT_DB_ALIAS
            instance._state = state
            return instance

        return load


def where_sql(model: type[Model], condition: Q) -> tuple[str, list[Any]]:
    """``condition`` as the ORM compiles it for ``model``'s table: SQL with ``%s`` placeholders
    and their values. Columns come qualified by the table name, so the fragment fits any
    statement that names the table unaliased. Conditions that need a join are refused."""
    query = Query(model)
    query.add_q(condition)
    if len(query.alias_map) > 1:
        raise ValueError(f"{condition!r} needs a join; write it against one table")
    compiler = query.get_compiler(DEFAULT_DB_ALIAS)
    sql, params = compiler.compile(query.where)
    return sql, list(params)


def _element(value: object) -> str:
    if value is None:
        return "NULL"
    text = str(value)
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def array_literal(values: Sequence[object | None]) -> str:
    """``values`` as PostgreSQL's array input reads them (``'{"a","b\\"c",NULL}'``), bound as one
    text parameter and cast in the statement (``%s::text[]``, ``%s::uuid[]``, ``%s::integer[]``).
    Every element is double-quoted (so braces, commas, blanks and the word NULL are data) with
    its backslashes and double quotes escaped; None is SQL NULL; other values go in as ``str()``
    writes them. psycopg's list dumper does the same in Python, per element and per call, and
    cost an append a twentieth of its time (bench/README.md); tests/config/test_raw_select.py
    holds the two to each other through PostgreSQL."""
    return "{" + ",".join(map(_element, values)) + "}"


def statement_cursor(alias: str = DEFAULT_DB_ALIAS) -> Any:
    """The cursor a hand-written statement runs on (config.db.backend's ``statement_cursor``)."""
    return connections[alias].statement_cursor()  # type: ignore[attr-defined]  # our backend's


def select_one(sql: str, params: Sequence[Any], shapes: Sequence[ModelColumns]) -> list[Model] | None:
    """Run a one-row SELECT whose columns are ``shapes``' columns in order; None if no row."""
    with statement_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    instances, start = [], 0
    for shape in shapes:
        end = start + len(shape.columns)
        instances.append(shape.load(row[start:end]))
        start = end
    return instances


def select_all(sql: str, params: Sequence[Any], shape: ModelColumns) -> list[Model]:
    """Run a SELECT whose columns are ``shape``'s columns; one instance per row, in order. It goes
    where a queryset of ``shape``'s model would read (a replica inside ``replica_read``);
    ``select_one`` (the one-row lookups of authentication and detail routes) is the primary's."""
    with statement_cursor(router.db_for_read(shape.model)) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    load = shape.loader()
    return [load(row) for row in rows]


def distinct_values(queryset: QuerySet[Any], column: str, *, limit: int) -> list[Any]:
    """The distinct non-NULL values of an indexed column of ``queryset``'s table, ascending, at
    most ``limit``: the same as ``values_list(column, flat=True).distinct()`` over the whole table.

    ``SELECT DISTINCT`` reads every row (PostgreSQL 16 has no skip scan); this walks the column's
    B-tree index from one value to the next instead: one index probe per value. Filters on
    ``queryset`` are ignored: it names the table, not the rows.
    """
    model = queryset.model
    connection = connections[queryset.db]
    table = connection.ops.quote_name(model._meta.db_table)
    name = column_name(model, column)
    sql = f"""
        WITH RECURSIVE walk(value, n) AS (
            (SELECT {name}, 1 FROM {table} WHERE {name} IS NOT NULL ORDER BY {name} LIMIT 1)
            UNION ALL
            SELECT (SELECT {name} FROM {table} WHERE {name} > walk.value ORDER BY {name} LIMIT 1), walk.n + 1
              FROM walk
             WHERE walk.value IS NOT NULL AND walk.n < %s
        )
        SELECT value FROM walk WHERE value IS NOT NULL
    """  # noqa: S608  (identifiers come from model metadata, quoted)
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]
