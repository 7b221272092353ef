"""make backup / make restore (python -m config.db.backup): a seeded database survives the round trip."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import psycopg
import pytest

from config.db import backup
from tests.conftest import BASE_DIR, run_manage, run_python

pytestmark = pytest.mark.django_db

TABLES = ["users", "api_keys", "sessions", "session_messages", "audit_logs", "django_migrations", "django_cache"]
# Whole tables compared row for row, in a stable order.
SAMPLES = {
    "session_messages": "SELECT * FROM session_messages ORDER BY session_id, sequence",
    "audit_logs": "SELECT * FROM audit_logs ORDER BY timestamp, id",
    "users": "SELECT * FROM users ORDER BY id",
    "api_keys": "SELECT * FROM api_keys ORDER BY id",
    "sessions": "SELECT * FROM sessions ORDER BY id",
}

EXTRA_DATA = """
import django
django.setup()
from accounts.models import User
from accounts.services import user_soft_delete
from agent_sessions.models import Session
from config.context import system_actor

with system_actor("test"):
    alice = User.objects.with_email("alice@demo.example").get()
    session = Session.objects.filter(user=alice).order_by("created_at").first()
    for i in range(60):
        session.add_message(
            ["user", "assistant", "tool"][i % 3],
            f"message {i} \\u00e9\\u6f22 with 'quotes'",
            tool_calls=[{"name": "search", "args": {"q": i}}] if i % 3 == 2 else None,
            metadata={"i": i},
            token_count=i,
        )
    user_soft_delete(actor=None, user=User.objects.with_email("bob@demo.example").get())
"""


def _backup(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "config.db.backup", *args],
        env={**os.environ, "DATABASE_URL": url},
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _snapshot(url: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608
        rows = {name: conn.execute(sql).fetchall() for name, sql in SAMPLES.items()}
    return {"counts": counts, "rows": rows}


@pytest.fixture
def seeded(scratch_database) -> str:
    url = scratch_database()
    for step in (("migrate", "--noinput"), ("seed_demo",)):
        result = run_manage(*step, env={"DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
    extra = run_python(EXTRA_DATA, env={"DATABASE_URL": url})
    assert extra.returncode == 0, extra.stderr
    return url


def test_a_dump_restored_into_a_fresh_database_is_identical_and_verifies(seeded, scratch_database, tmp_path):
    dump = _backup("dump", "--dir", str(tmp_path), url=seeded)
    assert dump.returncode == 0, dump.stderr
    (file,) = tmp_path.iterdir()
    assert re.fullmatch(r"scratch_[0-9a-f]{12}-\d{8}T\d{6}Z\.dump", file.name)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert file.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format

    target = scratch_database()
    restored = _backup("restore", str(file), url=target)
    assert restored.returncode == 0, restored.stderr

    verified = run_manage("verify_database", env={"DATABASE_URL": target})
    assert verified.returncode == 0, verified.stderr
    assert "database verified" in verified.stdout
    before, after = _snapshot(seeded), _snapshot(target)
    assert before["counts"] == after["counts"]
    assert before["counts"]["session_messages"] == 10 + 60 and before["counts"]["audit_logs"] > 10
    for name in SAMPLES:
        assert before["rows"][name] == after["rows"][name], name
    # The append-only trigger came back with the table.
    with psycopg.connect(target) as conn, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("DELETE FROM audit_logs")


def test_restore_refuses_a_database_that_is_not_empty_unless_clean(seeded, tmp_path):
    file = tmp_path / "seeded.dump"
    assert _backup("dump", "--output", str(file), url=seeded).returncode == 0
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("INSERT INTO django_cache VALUES ('added-after-the-dump', 'v', now())")

    refused = _backup("restore", str(file), url=seeded)

    assert refused.returncode == 1
    assert "is not empty" in refused.stderr and "--clean" in refused.stderr
    with psycopg.connect(seeded) as conn:
        assert conn.execute("SELECT count(*) FROM django_cache WHERE cache_key = 'added-after-the-dump'").fetchone()[0]

    cleaned = _backup("restore", str(file), "--clean", url=seeded)

    assert cleaned.returncode == 0, cleaned.stderr
    with psycopg.connect(seeded) as conn:
        assert not conn.execute(
            "SELECT count(*) FROM django_cache WHERE cache_key = 'added-after-the-dump'"
        ).fetchone()[0]
    assert run_manage("verify_database", env={"DATABASE_URL": seeded}).returncode == 0


def test_a_failed_restore_restores_nothing(scratch_database, tmp_path):
    broken = tmp_path / "broken.dump"
    broken.write_bytes(b"PGDMP this is not a real archive")
    target = scratch_database()

    result = _backup("restore", str(broken), url=target)

    assert result.returncode == 1 and "pg_restore failed" in result.stderr
    assert backup.user_relation_count(backup.target_for_url(target)) == 0


def test_an_unreachable_server_is_a_one_line_error(tmp_path):
    result = _backup("dump", "--dir", str(tmp_path), url="postgresql://postgres@127.0.0.1:1/nothing")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to database 'nothing'")
    assert not list(tmp_path.iterdir())


def test_the_client_is_at_least_as_new_as_the_server():
    # The system pg_dump may be older than the embedded server; the chosen one never is.
    chosen = backup.choose_client("pg_dump", server_major=16, embedded=False)
    assert backup.client_version(chosen) >= 16
    with pytest.raises(backup.BackupError, match="no pg_dump of PostgreSQL 99 or newer"):
        backup.choose_client("pg_dump", server_major=99, embedded=False)


def test_the_password_stays_out_of_the_command_line():
    target = backup.target_for_url("postgresql://app:s3cret-pw@db.example:5433/agents?sslmode=require")
    assert "s3cret-pw" not in target.conninfo
    assert target.env["PGPASSWORD"] == "s3cret-pw"
    assert (target.dbname, "sslmode=require" in target.conninfo) == ("agents", True)


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", *args], cwd=BASE_DIR, capture_output=True, text=True, timeout=300, check=False)


def test_make_backup_and_make_restore(seeded, scratch_database, tmp_path):
    made = _make("backup", f"BACKUP_DIR={tmp_path}", f"DATABASE_URL={seeded}")
    assert made.returncode == 0, made.stderr
    (file,) = tmp_path.glob("*.dump")
    target = scratch_database()

    assert _make("restore", f"DATABASE_URL={target}").returncode == 2  # no FILE: usage
    restored = _make("restore", f"FILE={file}", f"DATABASE_URL={target}")
    assert restored.returncode == 0, restored.stderr
    assert _snapshot(seeded)["counts"] == _snapshot(target)["counts"]

    again = _make("restore", f"FILE={file}", f"DATABASE_URL={target}")
    assert again.returncode != 0 and "is not empty" in again.stderr
    assert _make("restore", f"FILE={file}", "CLEAN=1", f"DATABASE_URL={target}").returncode == 0
