"""The client package against the live service: one gunicorn per test module, serving the test
database; each test gets fresh users and keys, committed (transactional tests) so the server
sees them, and flushed after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection

from tests.conftest import database_url
from tests.reliability.servers import Gunicorn, service_env

# The free tier's rate on the module's server: low enough that a test meets a real 429 with
# Retry-After within a second; every other test's key is enterprise (unlimited).
FREE_TIER_RATE = "4/sec"


@pytest.fixture(scope="module")
def platform_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[Gunicorn]:
    env = service_env(
        database_url(connection.settings_dict["NAME"]),
        DB_POOL_SIZE="2",
        DB_MAX_OVERFLOW="6",
        RATE_LIMIT_FREE=FREE_TIER_RATE,
    )
    server = Gunicorn(env, workers=2, threads=4)
    server.start()
    try:
        yield server
    finally:
        output = server.stop()
        # Rate counters live in the database cache table, which the flush leaves alone.
        with django_db_blocker.unblock():
            cache.clear()
    assert "Traceback" not in output, output[-5000:]


@dataclass
class Platform:
    url: str
    key: str


@pytest.fixture
def platform(platform_server: Gunicorn, transactional_db: None, make_user: Callable, make_key: Callable) -> Platform:
    """The live service and a fresh enterprise key of a fresh user."""
    user = make_user(roles=["user"])
    _, raw = make_key(user)
    return Platform(url=platform_server.url, key=raw)


@pytest.fixture
def other_key(platform: Platform, make_user: Callable, make_key: Callable) -> str:
    """Another user's key on the same service."""
    _, raw = make_key(make_user(roles=["user"]))
    return str(raw)
