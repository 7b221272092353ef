"""The migration chain mirrors the seed's four steps, reverses cleanly, and matches the models."""

from __future__ import annotations

import psycopg
import pytest
from django.core.management import call_command

from tests.conftest import run_manage

SEED_TABLES = ("audit_logs", "users", "api_keys", "sessions")


def _tables(url: str) -> set[str]:
    with psycopg.connect(url.replace("postgresql://", "postgresql://", 1)) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_plan_applies_the_seed_chain_in_order(scratch_database):
    url = scratch_database()
    result = run_manage("migrate", "--plan", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    ours = [
        line.strip()
        for line in result.stdout.splitlines()
        if line.strip().split(".")[0] in {"audit", "accounts", "apikeys", "agent_sessions"}
    ]
    # The seed's four steps, in its order; later changes (accounts.0002_oidc_provider, ...) follow
    # their own app's first step.
    assert [name for name in ours if name.endswith(".0001_initial")] == [
        "audit.0001_initial",
        "accounts.0001_initial",
        "apikeys.0001_initial",
        "agent_sessions.0001_initial",
    ]


def test_chain_applies_and_reverses_to_zero(scratch_database):
    url = scratch_database()
    env = {"DATABASE_URL": url}
    migrated = run_manage("migrate", "--noinput", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert set(SEED_TABLES) | {"session_messages"} <= _tables(url)

    for app in ("agent_sessions", "apikeys", "accounts", "audit"):
        result = run_manage("migrate", app, "zero", "--noinput", env=env)
        assert result.returncode == 0, result.stderr

    remaining = _tables(url)
    assert not remaining & {*SEED_TABLES, "session_messages"}
    with psycopg.connect(url) as conn:
        functions = conn.execute("SELECT 1 FROM pg_proc WHERE proname = 'audit_logs_append_only'").fetchall()
    assert functions == []

    again = run_manage("migrate", "--noinput", env=env)
    assert again.returncode == 0, again.stderr
    assert set(SEED_TABLES) <= _tables(url)
