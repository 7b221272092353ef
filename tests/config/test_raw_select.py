"""The building blocks of the hand-written statements: rules compiled from their Q, instances
loaded the ORM's way, distinct values by a loose index scan."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Q

from agent_sessions.models import ACTIVE, Session
from config.db.raw_select import ModelColumns, distinct_values, select_all, where_sql
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


def test_distinct_values_walk_the_index_and_match_select_distinct(alice):
    for agent in ["b", "a", "c", "a", "b"]:
        Session.objects.create(user=alice.user, agent_id=agent, title="t")
    assert distinct_values(Session.objects.all(), "agent_id", limit=10) == ["a", "b", "c"]
    assert distinct_values(Session.objects.all(), "agent_id", limit=2) == ["a", "b"]
