from __future__ import annotations

import time

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from config import health
from tests.conftest import run_python

pytestmark = pytest.mark.django_db


def test_health_reports_database_with_real_pool_figures(anon):
    response = anon.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    (database,) = body["components"]
    assert database["name"] == "database"
    assert database["status"] == "healthy"
    assert isinstance(database["latency_ms"], float)
    details = database["details"]
    assert details["mode"] == "pool"
    assert details["pool_size"] == 5 and details["max_overflow"] == 10
    assert details["total"] >= 1
    assert details["checked_in"] + details["checked_out"] == details["total"]
    assert details["overflow"] >= 0


def test_live_touches_nothing(anon, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = anon.get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "alive"


def test_ready_when_migrated(anon):
    health._migrated = False
    response = anon.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_ready_is_503_with_an_unapplied_migration(anon):
    health._migrated = False
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'agent_sessions'")

    response = anon.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    migrations = next(c for c in body["components"] if c["name"] == "migrations")
    agent_sessions_migrations = [key for key in MigrationLoader(None).disk_migrations if key[0] == "agent_sessions"]
    assert migrations["details"]["unapplied"] == len(agent_sessions_migrations)


def test_health_needs_no_authentication_and_no_https(anon):
    for path in ("/health", "/health/live", "/health/ready"):
        assert anon.get(path).status_code in (200, 503)


def test_health_is_503_fast_when_the_database_is_unreachable():
    # A fresh process whose DATABASE_URL points at a port nothing listens on.
    code = (
        "import django, time; django.setup()\n"
        "from django.test import Client\n"
        "t = time.perf_counter(); r = Client().get('/health', HTTP_HOST='localhost')\n"
        "import json; b = json.loads(r.content)\n"
        "print(r.status_code, b['status'], b['components'][0]['status'], round(time.perf_counter() - t, 2))\n"
    )
    started = time.perf_counter()
    result = run_python(
        code, env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing", "DB_POOL_TIMEOUT": "30"}
    )
    assert result.returncode == 0, result.stderr
    status, overall, component, seconds = result.stdout.split()[-4:]
    assert (status, overall, component) == ("503", "unhealthy", "unhealthy")
    assert float(seconds) < 5, "the health check waited for the pool timeout"
    assert time.perf_counter() - started < 30


def test_startup_is_503_until_migrations_are_applied_then_200(anon):
    health._started = False
    health._migrated = False
    # The app's newest migration marked unapplied (an older one would still count as applied
    # under an applied child).
    from django.db.migrations.loader import MigrationLoader

    (latest,) = [name for app, name in MigrationLoader(connection).graph.leaf_nodes() if app == "agent_sessions"]
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'agent_sessions' AND name = %s", [latest])

    response = anon.get("/health/startup")
    assert response.status_code == 503
    assert response.json()["status"] == "starting"
    assert response.json()["checks"]["unapplied_migrations"] == 1

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('agent_sessions', %s, now())", [latest]
        )
    response = anon.get("/health/startup")
    assert response.status_code == 200
    assert response.json()["status"] == "started"


def test_startup_is_503_while_the_database_was_never_reached():
    code = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "r = Client().get('/health/startup', HTTP_HOST='localhost')\n"
        "import json; print(r.status_code, json.loads(r.content)['status'])\n"
    )
    result = run_python(code, env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["503", "starting"]
