"""The building blocks of the hand-written statements: rules compiled from their Q, instances
loaded the ORM's way, distinct values by a loose index scan, arrays bound as their literal."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection
from django.db.models import Q

from agent_sessions.models import ACTIVE, Message, Session
from config.db.raw_select import (
    ModelColumns,
    array_literal,
    distinct_values,
    load_json,
    select_all,
    statement_cursor,
    where_sql,
)
from config.db.soft_delete import LIVE

pytestmark = pytest.mark.django_db


def test_a_rule_compiles_to_the_sql_the_orm_sends_with_its_values_as_parameters():
    live, params = where_sql(Session, LIVE)
    assert live == '"sessions"."deleted_at" IS NULL' and params == []
    active, params = where_sql(Session, ACTIVE)
    assert '"sessions"."status" = %s' in active and params == ["active"]
    assert "STATEMENT_TIMESTAMP()" in active  # the database's clock, no Python time baked in
    orm_sql, _ = Session.objects.filter(ACTIVE).query.sql_with_params()
    assert active.strip("()") in orm_sql


def test_a_rule_that_needs_a_join_is_refused():
    with pytest.raises(ValueError, match="join"):
        where_sql(Session, Q(user__email="x@example.com"))


def test_rows_load_into_the_instances_the_orm_would_build(alice):
    Session.objects.create(user=alice.user, agent_id="a", title="t", context={"k": [1, 2]})
    shape = ModelColumns(Session)
    with connection.cursor():
        loaded = select_all(f"SELECT {shape.select_list} FROM {shape.table} ORDER BY 1", [], shape)  # noqa: S608
    orm = list(Session.all_objects.order_by("pk"))
    assert [vars(s) | {"_state": None} for s in loaded] == [vars(s) | {"_state": None} for s in orm]


def _state(instance):
    return (instance._state.adding, instance._state.db)


@pytest.mark.parametrize("model_name", ["Session", "Message", "APIKey", "User"])
def test_every_models_rows_load_as_from_db_builds_them_attribute_for_attribute(model_name, alice):
    from accounts.models import User
    from agent_sessions.models import Message
    from apikeys.models import APIKey

    model = {"Session": Session, "Message": Message, "APIKey": APIKey, "User": User}[model_name]
    session = Session.objects.create(user=alice.user, agent_id="a", title="t", metadata={"b": 1, "a": [1.5]})
    Message.objects.create(session=session, sequence=1, role="user", content="hi", metadata={"x": None})
    shape = ModelColumns(model)
    assert shape._plain_attributes, "the fast path is the one under test"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {shape.select_list} FROM {shape.table} ORDER BY 1")  # noqa: S608
        rows = cursor.fetchall()
    assert rows
    for row in rows:
        fast = shape.load(row)
        values = list(row)
        for i, (field, converters) in enumerate(shape.converters):
            for converter in converters:
                values[i] = converter(values[i], field, connection)
        slow = model.from_db("default", shape.attnames, values)
        assert type(fast) is model and vars(fast) | {"_state": None} == vars(slow) | {"_state": None}
        assert _state(fast) == _state(slow) == (False, "default")
        assert fast.pk == slow.pk and fast == slow


def test_a_model_with_init_listeners_is_loaded_through_from_db(alice):
    from django.db.models.signals import post_init

    Session.objects.create(user=alice.user, agent_id="a", title="t")
    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(listener, sender=Session)
    try:
        shape = ModelColumns(Session)
        loaded = select_all(f"SELECT {shape.select_list} FROM {shape.table}", [], shape)  # noqa: S608
    finally:
        post_init.disconnect(listener, sender=Session)
    assert loaded and seen == loaded


def test_distinct_values_walk_the_index_and_match_select_distinct(alice):
    for agent in ["b", "a", "c", "a", "b"]:
        Session.objects.create(user=alice.user, agent_id=agent, title="t")
    assert distinct_values(Session.objects.all(), "agent_id", limit=10) == ["a", "b", "c"]
    assert distinct_values(Session.objects.all(), "agent_id", limit=2) == ["a", "b"]


# What array input could misread: its own syntax as data, escapes, blanks, the word NULL, JSON.
AWKWARD = [
    "",
    " ",
    "  padded  ",
    "NULL",
    "null",
    "a,b",
    "{",
    "}",
    "{a,b}",
    '"',
    '""',
    "\\",
    "\\\\",
    '\\"',
    "tab\there",
    "line\nbreak",
    "caf\u00e9",
    "\U0001f600",
    '{"k": "v\\u0000"}',
    "'quoted'",
    "x" * 5000,
]


@pytest.mark.parametrize("cursor_of", [statement_cursor, lambda: connection.cursor()], ids=["prepared", "django"])
def test_an_array_literal_reads_back_as_psycopg_binds_the_list(cursor_of):
    texts = [*AWKWARD, None]
    ids = [uuid.uuid4(), None, uuid.uuid4()]
    numbers = [0, -1, 2**31 - 1, None]
    with cursor_of() as cursor:
        cursor.execute(
            "SELECT %s::text[], %s::text[], %s::uuid[], %s::uuid[], %s::integer[], %s::integer[], %s::text[]",
            [array_literal(texts), texts, array_literal(ids), ids, array_literal(numbers), numbers, array_literal([])],
        )
        ours_text, psycopg_text, ours_ids, psycopg_ids, ours_numbers, psycopg_numbers, empty = cursor.fetchone()
    assert ours_text == psycopg_text == texts
    assert ours_ids == psycopg_ids == ids
    assert ours_numbers == psycopg_numbers == numbers
    assert empty == []


# JSON whose reading could differ between parsers: integers past 64 bits, numbers past a double,
# exponents, escapes, non-ASCII, deep nesting, the empty containers.
AWKWARD_JSON = [
    "{}",
    "[]",
    "null",
    '{"n": 123456789012345678901234567890}',
    '{"n": -9223372036854775809, "m": 9223372036854775807, "k": 18446744073709551616}',
    '{"f": 1.5e-7, "g": 2E+3, "h": 0.1, "i": 1.0, "j": -0.0, "k": 1e308}',
    '{"big": 1e400}',
    '{"s": "caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ \\n", "t": "0123456789012345678901"}',
    '{"deep": [[[[{"a": [1, {"b": null}]}]]]], "bool": [true, false]}',
    '{"b": 2, "a": 1, "aa": {"z": [], "y": {}}}',
]


@pytest.mark.parametrize("text", AWKWARD_JSON)
def test_json_columns_load_as_djangos_json_field_loads_them(text):
    field = Message._meta.get_field("metadata")
    with connection.cursor() as cursor:  # PostgreSQL's own spelling of the stored value
        cursor.execute("SELECT %s::jsonb::text", [text])
        stored = cursor.fetchone()[0]
    ours = load_json(stored)
    django = field.from_db_value(stored, None, connection)
    assert ours == django
    assert json.dumps(ours, sort_keys=True) == json.dumps(django, sort_keys=True)  # ints stay ints
    assert [type(v) for v in _leaves(ours)] == [type(v) for v in _leaves(django)]
    assert load_json(None) is None


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for key in value for leaf in _leaves(value[key])]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
