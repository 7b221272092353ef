"""Pool mode under a server that runs one request at a time (a sync gunicorn worker): the thread
keeps its checkout from one request to the next for up to HOLD_SECONDS instead of handing it
back at every request's end, and hands back anything a request left open. Under a threaded
server every request's connection goes back as before.

Real requests through the production WSGI handler, with Django's per-request connection
handling (close_old_connections) as gunicorn runs it, against the suite's PostgreSQL in pool
mode."""

from __future__ import annotations

import io
import select
import time
from typing import Any
from wsgiref.util import setup_testing_defaults

import psycopg
import pytest
from django.db import connection

from config.db import pool as pool_module
from config.handlers import LaneWSGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


def get(application: Any, path: str, *, key: str, threaded: bool) -> int:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "HTTP_HOST": "testserver"}
    environ |= {"HTTP_AUTHORIZATION": f"Bearer {key}", "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    environ["wsgi.multithread"] = threaded
    status: list[str] = []
    result = application(environ, lambda s, h, exc_info=None: status.append(s))
    try:
        b"".join(result)
    finally:
        result.close()  # request_finished: where Django hands a connection back
    return int(status[0][:3])


@pytest.fixture
def pooled() -> Any:
    if connection.pool is None:  # type: ignore[attr-defined]
        pytest.skip("the suite runs in another DB_POOL_MODE than pool (the hold is pool mode's)")
    # Nothing held from earlier work on this thread: each test starts from a server's first request.
    pool_module.serving_one_request_at_a_time(False)
    connection.close()
    yield connection
    pool_module.serving_one_request_at_a_time(False)
    connection.close()


def test_one_request_at_a_time_keeps_the_checkout_between_requests(pooled, alice):
    application = LaneWSGIHandler()
    assert get(application, "/api/v1/sessions/", key=alice.raw_key, threaded=False) == 200
    held = pooled.connection
    assert held is not None, "handed back at the request's end"
    assert get(application, "/api/v1/sessions/", key=alice.raw_key, threaded=False) == 200
    assert pooled.connection is held  # the same checkout served the next request


def test_a_held_checkout_goes_back_to_the_pool_once_its_hold_is_over(pooled, alice, monkeypatch):
    monkeypatch.setattr(pool_module, "HOLD_SECONDS", 0.2)
    monkeypatch.setattr("config.db.backend.base.HOLD_SECONDS", 0.2)
    application = LaneWSGIHandler()
    assert get(application, "/api/v1/sessions/", key=alice.raw_key, threaded=False) == 200
    assert pooled.connection is not None
    time.sleep(0.3)
    assert get(application, "/health/live", key=alice.raw_key, threaded=False) == 200
    assert pooled.connection is None  # handed back at the first request end past the hold


def test_a_threaded_server_hands_the_connection_back_at_every_request_end(pooled, alice):
    application = LaneWSGIHandler()
    assert get(application, "/api/v1/sessions/", key=alice.raw_key, threaded=True) == 200
    assert pooled.connection is None


def test_a_transaction_left_open_is_not_carried_into_the_next_request(pooled, alice):
    application = LaneWSGIHandler()
    assert get(application, "/api/v1/sessions/", key=alice.raw_key, threaded=False) == 200
    with pooled.cursor() as cursor:  # what a request could leave behind: BEGIN under autocommit
        cursor.execute("BEGIN")
        cursor.execute("SELECT 1")
    assert get(application, "/health/live", key=alice.raw_key, threaded=False) == 200
    assert pooled.connection is None  # handed back (the pool rolls it back) instead of kept
    assert get(application, "/api/v1/sessions/", key=alice.raw_key, threaded=False) == 200
    with pooled.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.01)")
        cursor.execute("SELECT now() = statement_timestamp()")  # no transaction spans statements
        assert cursor.fetchone() == (True,)


def test_a_held_connection_that_broke_is_replaced_at_the_next_requests_first_query(pooled, alice):
    application = LaneWSGIHandler()
    assert get(application, "/api/v1/sessions/", key=alice.raw_key, threaded=False) == 200
    held = pooled.connection
    backend = held.info.backend_pid
    with _other_connection() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [backend])
    # The server's goodbye reaches the held connection's socket.
    assert select.select([held.pgconn.socket], [], [], 5)[0]
    assert get(application, "/api/v1/sessions/", key=alice.raw_key, threaded=False) == 200
    assert pooled.connection is not held
    assert pooled.connection.info.backend_pid != backend


def _other_connection() -> psycopg.Connection[Any]:
    params = connection.get_connection_params()
    for name in ("context", "cursor_factory", "prepare_threshold"):
        params.pop(name, None)
    return psycopg.connect(**params, autocommit=True)
