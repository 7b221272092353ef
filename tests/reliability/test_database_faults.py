"""Database faults short of an outage, against gunicorn and a private PostgreSQL: a starved pool,
a statement past DB_STATEMENT_TIMEOUT, the timeout behind PgBouncer. (Restarts and outages, in
every pool mode: test_database_outages.py.)

Nothing here touches the shared test server: each module run starts its own PostgreSQL
(tests/reliability/servers.py) and tears it down.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest

from tests.reliability.servers import (
    Gunicorn,
    PgBouncer,
    PrivatePostgres,
    Reply,
    http,
    manage,
    pgbouncer_binary,
    seed,
    service_env,
)

pytestmark = pytest.mark.slow


@dataclass
class Service:
    pg: PrivatePostgres
    env: dict[str, str]
    raw_key: str
    session_id: str


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    """A private PostgreSQL with a migrated database and a user, a key and a session in it."""
    pg = PrivatePostgres()
    try:
        pg.start()
        env = service_env(pg.create_database("app"))
        manage("migrate", "--noinput", env=env)
        seeded = seed(env)
        yield Service(pg=pg, env=env, raw_key=seeded["raw_key"], session_id=seeded["session_id"])
    finally:
        pg.destroy()


@pytest.fixture
def start_gunicorn(service: Service) -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []

    def start(*, env: dict[str, str] | None = None, workers: int = 1, threads: int = 1, **settings: str) -> Gunicorn:
        server = Gunicorn({**(env or service.env), **settings}, workers=workers, threads=threads)
        started.append(server)
        server.start()
        return server

    yield start
    if not service.pg.is_running():
        service.pg.start()  # a failed test must not leave the next one without a database
    for server in started:
        output = server.stop()
        assert "Traceback" not in output, output[-5000:]


def new_session(server: Gunicorn, key: str) -> str:
    reply = http("POST", f"{server.url}/api/v1/sessions/", key=key, body={"agent_id": "faults", "title": "t"})
    assert reply.status == 201, reply.body
    return reply.json()["id"]


def assert_json_503(reply: Reply) -> None:
    assert reply.status == 503, (reply.status, reply.body, reply.error)
    assert reply.headers.get("Retry-After") == "1"
    assert reply.json()["code"] == "database_unavailable"


@contextmanager
def row_locked(pg: PrivatePostgres, dbname: str, session_id: str) -> Iterator[None]:
    """Hold the session row's lock from another connection, as a long transaction would."""
    with pg.connect(dbname) as conn:
        conn.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", [session_id])
        try:
            yield
        finally:
            conn.rollback()


def wait_for_lock_waiters(pg: PrivatePostgres, dbname: str, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with pg.connect(dbname, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (waiting,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'", [dbname]
            ).fetchone()
            if waiting >= count:
                return
            time.sleep(0.02)
    raise AssertionError(f"fewer than {count} requests ever waited on the lock")


# --- pool exhausted -----------------------------------------------------------------------------


def test_an_exhausted_pool_answers_503_within_the_pool_timeout_and_recovers(service, start_gunicorn):
    # One worker with four threads sharing a pool of one connection, held by a request that
    # waits on a row lock taken from outside.
    server = start_gunicorn(workers=1, threads=4, DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0", DB_POOL_TIMEOUT="1")
    session_id = new_session(server, service.raw_key)
    holder: list[Reply] = []
    with row_locked(service.pg, "app", session_id):
        thread = threading.Thread(
            target=lambda: holder.append(
                http(
                    "POST",
                    f"{server.url}/api/v1/sessions/{session_id}/messages/",
                    key=service.raw_key,
                    body={"role": "user", "content": "held"},
                )
            )
        )
        thread.start()
        wait_for_lock_waiters(service.pg, "app", 1)

        starved = [http("GET", f"{server.url}/api/v1/sessions/{session_id}/", key=service.raw_key) for _ in range(3)]
        health = http("GET", f"{server.url}/health")
    thread.join(timeout=30)

    for reply in starved:
        assert_json_503(reply)
        assert 0.9 <= reply.seconds < 2.5, f"answered after {reply.seconds:.2f}s with a 1 s pool timeout"
    assert health.status == 503 and health.seconds < 2.5
    # The lock went away: the held request finishes, and the pool serves again.
    assert holder[0].status == 201, holder[0].body
    assert http("GET", f"{server.url}/api/v1/sessions/{session_id}/", key=service.raw_key).status == 200
    assert http("GET", f"{server.url}/health").status == 200


# --- statement timeout ----------------------------------------------------------------------------


def _pool_figures(server: Gunicorn) -> dict[str, int]:
    return http("GET", f"{server.url}/health").json()["components"][0]["details"]


def test_a_statement_slower_than_the_timeout_is_cancelled_with_503_and_the_connection_stays_usable(
    service, start_gunicorn
):
    server = start_gunicorn(
        workers=1, DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0", DB_POOL_TIMEOUT="5", DB_STATEMENT_TIMEOUT="0.5"
    )
    key = service.raw_key
    session_id = new_session(server, key)
    before = _pool_figures(server)
    with row_locked(service.pg, "app", session_id):
        append = http(
            "POST",
            f"{server.url}/api/v1/sessions/{session_id}/messages/",
            key=key,
            body={"role": "user", "content": "x"},
        )
        edit = http("PATCH", f"{server.url}/api/v1/sessions/{session_id}/", key=key, body={"title": "changed"})
        # Meanwhile the same worker, on the same connection, serves what needs no lock.
        read = http("GET", f"{server.url}/api/v1/sessions/{session_id}/", key=key)

    for reply in (append, edit):
        assert_json_503(reply)
        assert 0.4 <= reply.seconds < 3, reply.seconds
    assert read.status == 200 and read.json()["total_messages"] == 0 and read.json()["title"] == "t"
    after = _pool_figures(server)
    assert after["connections_opened"] == before["connections_opened"] == 1, (before, after)
    assert after["connections_lost"] == before["connections_lost"]
    # And once the lock is gone the same connection takes the write.
    assert (
        http("PATCH", f"{server.url}/api/v1/sessions/{session_id}/", key=key, body={"title": "changed"}).status == 200
    )
    assert _pool_figures(server)["connections_opened"] == 1


@pytest.fixture
def pgbouncer(service: Service) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        if os_flag("CI_REQUIRE_PGBOUNCER"):
            pytest.fail("CI_REQUIRE_PGBOUNCER=1 but pgbouncer is not installed (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer); .ci/run installs it")
    bouncer = PgBouncer(server_host="127.0.0.1", server_port=service.pg.port)
    bouncer.start()
    yield bouncer
    bouncer.destroy()


def os_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def test_behind_pgbouncer_the_statement_timeout_comes_from_the_role_default(service, pgbouncer, start_gunicorn):
    service.pg.create_database("bounced")
    env = service_env(pgbouncer.url("bounced"), DB_POOL_MODE="pgbouncer", DB_STATEMENT_TIMEOUT="0.5")
    # migrate through PgBouncer writes ALTER ROLE ... IN DATABASE bounced SET statement_timeout,
    # and says what to do about the server connections PgBouncer already holds.
    migrated = manage("migrate", "--noinput", env=env)
    assert "RECONNECT" in migrated.stderr, migrated.stderr[-2000:]
    with service.pg.connect("bounced") as direct:
        settings = direct.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = 'bounced'"
        ).fetchone()[0]
    assert "statement_timeout=500" in settings
    pgbouncer.admin("RECONNECT bounced")
    key = seed(env)["raw_key"]
    server = start_gunicorn(env=env, workers=1)
    session_id = new_session(server, key)

    with row_locked(service.pg, "bounced", session_id):
        append = http(
            "POST",
            f"{server.url}/api/v1/sessions/{session_id}/messages/",
            key=key,
            body={"role": "user", "content": "x"},
        )
    assert_json_503(append)
    assert 0.4 <= append.seconds < 3, append.seconds
    assert http("GET", f"{server.url}/api/v1/sessions/{session_id}/", key=key).json()["total_messages"] == 0
    # Through PgBouncer, in a fresh server connection, the role default is what applies.
    with psycopg.connect(pgbouncer.url("bounced"), prepare_threshold=None, autocommit=True) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "500ms"
