"""Fixtures for the reliability tests: the production server (gunicorn) on the test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.db import connection

from tests.conftest import database_url
from tests.reliability.servers import Gunicorn, service_env


@pytest.fixture
def app_env() -> dict[str, str]:
    """Extra environment for ``app_server``; a test module overrides this fixture to change it."""
    return {}


@pytest.fixture
def app_server(transactional_db: None, app_env: dict[str, str]) -> Iterator[Gunicorn]:
    """gunicorn (config/gunicorn.conf.py) serving the test database, 4 workers x 8 threads.

    Django's live server listens with a backlog of 10 connections and resets the rest, so
    32 or 50 clients at once need the real server. Threads (gthread) make the requests run
    concurrently inside the service too, so they really race in PostgreSQL.
    """
    env = service_env(
        database_url(connection.settings_dict["NAME"]),
        DB_POOL_SIZE="2",
        DB_MAX_OVERFLOW="8",
        **app_env,
    )
    server = Gunicorn(env, workers=4, threads=8)
    server.start()
    try:
        yield server
    finally:
        output = server.stop()
        # Rate-limit counters live in the database cache table, which the flush between
        # transactional tests leaves alone: don't let this test's failures throttle the next.
        cache.clear()
    assert "Traceback" not in output, output[-5000:]
