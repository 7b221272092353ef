from __future__ import annotations

import pytest

from tests.conftest import run_manage


@pytest.mark.django_db
def test_verify_passes_on_a_migrated_database(scratch_database):
    url = scratch_database()
    assert run_manage("migrate", "--noinput", env={"DATABASE_URL": url}).returncode == 0

    result = run_manage("verify_database", env={"DATABASE_URL": url})

    assert result.returncode == 0, result.stderr
    assert "database verified" in result.stdout
    assert "pool: mode=pool" in result.stdout


def test_verify_fails_on_a_database_that_was_never_migrated(scratch_database):
    result = run_manage("verify_database", env={"DATABASE_URL": scratch_database()})

    assert result.returncode != 0
    reason = result.stderr.strip().splitlines()
    assert len(reason) == 1
    assert "never migrated" in reason[0]


def test_verify_fails_with_unapplied_migrations(scratch_database):
    url = scratch_database()
    assert run_manage("migrate", "apikeys", "--noinput", env={"DATABASE_URL": url}).returncode == 0

    result = run_manage("verify_database", env={"DATABASE_URL": url})

    assert result.returncode != 0
    assert "unapplied migration" in result.stderr
    assert "agent_sessions.0001_initial" in result.stderr


def test_verify_fails_when_a_seed_index_is_missing(scratch_database):
    import psycopg

    url = scratch_database()
    assert run_manage("migrate", "--noinput", env={"DATABASE_URL": url}).returncode == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX ix_sessions_user_activity")

    result = run_manage("verify_database", env={"DATABASE_URL": url})

    assert result.returncode != 0
    assert "ix_sessions_user_activity" in result.stderr


def test_verify_fails_when_the_server_is_unreachable():
    result = run_manage("verify_database", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing"})
    assert result.returncode != 0
    assert "cannot connect" in result.stderr
