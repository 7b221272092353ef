"""The hand-written statements are prepared on the server where connections are PostgreSQL's own
and outlive a request (pool and persistent modes), and bound on the client behind PgBouncer."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent_sessions.models import Session
from agent_sessions.queries import live_session
from config.db.backend.base import PreparingCursor
from config.db.connection import PoolSettings, build_database

URL = "postgresql://app@db.example.com:5432/agent_platform"


@pytest.mark.parametrize(
    ("settings", "prepares"),
    [
        (PoolSettings(mode="pool"), True),
        (PoolSettings(mode="persistent"), True),
        (PoolSettings(mode="pgbouncer"), False),
        (PoolSettings(mode="none"), False),
        (PoolSettings(mode="pool", prepared_statements=False), False),
    ],
    ids=["pool", "persistent", "pgbouncer", "none", "switched-off"],
)
def test_statements_are_prepared_only_where_a_connection_is_postgresqls_own_and_kept(settings, prepares):
    database = build_database(URL, settings)
    assert database["PREPARE_STATEMENTS"] is prepares
    assert "PREPARE_STATEMENTS" not in database["OPTIONS"]  # not a libpq parameter
    # psycopg prepares nothing at all with no threshold, which PgBouncer's mode keeps.
    assert (database["OPTIONS"].get("prepare_threshold") is not None) is prepares


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_a_lookup_is_prepared_once_per_connection_and_answers_as_the_orm_does(alice):
    assert connection.settings_dict["PREPARE_STATEMENTS"], "the suite runs in pool mode"
    session = Session.objects.create(user=alice.user, agent_id="a", title="t")
    with connection.statement_cursor() as cursor:
        assert isinstance(cursor.cursor, PreparingCursor)
    with CaptureQueriesContext(connection) as captured:
        found = [live_session(session.pk, owner_id=alice.user.pk) for _ in range(3)]
    assert len(captured) == 3  # counted and logged like any statement
    assert all(vars(f) | {"_state": None} == vars(found[0]) | {"_state": None} for f in found)
    assert found[0] == Session.objects.get(pk=session.pk)
    assert live_session(session.pk, owner_id=session.pk) is None  # another owner: none
    prepared = [text for text in _prepared() if 'FROM "sessions" WHERE "sessions"."id" = $1' in text]
    assert len(prepared) == 1, _prepared()  # one statement on the server, reused


@pytest.mark.django_db
def test_a_failed_prepared_statement_is_translated_and_leaves_the_connection_usable(alice):
    from django.db import DataError, transaction

    with pytest.raises(DataError), transaction.atomic(), connection.statement_cursor() as cursor:
        cursor.execute("SELECT %s::integer", ["not a number"])
    with connection.statement_cursor() as cursor:
        cursor.execute("SELECT %s::integer + 1", [41])
        assert cursor.fetchone() == (42,)
