"""SELECTs for the hottest lookups, compiled once per process instead of once per request.

Every ORM query is compiled to SQL on each execution: for a one-row lookup by primary key
that costs more Python time than the round trip to PostgreSQL (bench/profile.py shows it).
The key-and-owner lookup of every authenticated request and the fetch of one session never
change shape, so their SQL is built once from the models' own metadata (columns quoted,
values always bound as parameters) and each row becomes model instances through the same
converters and ``Model.from_db`` the ORM itself uses. The instances are ordinary: saving,
refreshing and related access work as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Model


class RowLoader:
    """All concrete columns of one model under a table alias, and how to turn them back into an instance."""

    def __init__(self, model: type[Model], alias: str) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        qn = connection.ops.quote_name
        self.model = model
        self.alias = alias
        self.table = f"{qn(model._meta.db_table)} {alias}"
        fields: list[Field] = list(model._meta.concrete_fields)
        self.attnames = [field.attname for field in fields]
        self.columns = [f"{alias}.{qn(field.column)}" for field in fields]
        self.converters: list[tuple[Field, list[Callable[..., Any]]]] = [
            (field, field.get_db_converters(connection)) for field in fields
        ]

    def column(self, field_name: str) -> str:
        connection = connections[DEFAULT_DB_ALIAS]
        return f"{self.alias}.{connection.ops.quote_name(self.model._meta.get_field(field_name).column)}"

    def load(self, values: Sequence[Any]) -> Model:
        connection = connections[DEFAULT_DB_ALIAS]
        converted = []
        for value, (field, converters) in zip(values, self.converters, strict=True):
            for converter in converters:
                value = converter(value, field, connection)
            converted.append(value)
        return self.model.from_db(DEFAULT_DB_ALIAS, self.attnames, converted)


def fetch_row(sql: str, params: Sequence[Any], loaders: Sequence[RowLoader]) -> list[Model] | None:
    """Run a one-row SELECT whose columns are ``loaders``' columns in order; None if no row."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    instances, start = [], 0
    for loader in loaders:
        end = start + len(loader.columns)
        instances.append(loader.load(row[start:end]))
        start = end
    return instances


def fetch_rows(sql: str, params: Sequence[Any], loader: RowLoader) -> list[Model]:
    """Run a SELECT whose columns are ``loader``'s columns; one instance per row, in order."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [loader.load(row) for row in rows]
