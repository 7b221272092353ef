"""Database faults, against gunicorn and a private PostgreSQL that the tests restart and starve.

Nothing here touches the shared test server: each module run starts its own PostgreSQL
(tests/reliability/servers.py) and tears it down. Figures (failed requests around a restart,
time to recover) are printed as JSON lines; run with -s or -rA to see them.
"""

from __future__ import annotations

import json
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


# --- PostgreSQL restarted under load --------------------------------------------------------------


def test_the_service_recovers_by_itself_from_a_postgresql_restart_under_load(service, start_gunicorn):
    workers = 3
    server = start_gunicorn(workers=workers, DB_POOL_SIZE="2", DB_MAX_OVERFLOW="2", DB_POOL_TIMEOUT="10")
    pids = server.worker_pids()
    session_id = new_session(server, service.raw_key)
    read_url = f"{server.url}/api/v1/sessions/{session_id}/"
    append_url = f"{server.url}/api/v1/sessions/{session_id}/messages/"
    log: list[tuple[float, float, str, Reply]] = []  # (sent, answered, kind, reply)
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            sent = time.monotonic()
            if n % 2:
                kind = "append"
                reply = http("POST", append_url, key=service.raw_key, body={"role": "user", "content": f"{n}:{i}"})
            else:
                kind, reply = "read", http("GET", read_url, key=service.raw_key)
            log.append((sent, time.monotonic(), kind, reply))
            i += 1
            time.sleep(0.005)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in clients:
        thread.start()
    time.sleep(2)
    restart_began = time.monotonic()
    service.pg.restart("fast")
    back_at = time.monotonic()  # pg_ctl -w returns once the server accepts connections
    time.sleep(5)
    stop.set()
    for thread in clients:
        thread.join(timeout=60)

    failed = [entry for entry in log if entry[3].status not in (200, 201)]
    after = [entry for entry in log if entry[0] >= back_at]
    first_ok = min(answered for sent, answered, _, reply in after if reply.status in (200, 201))
    figures = {
        "requests": len(log),
        "failed": len(failed),
        "failed_statuses": sorted({reply.status for *_, reply in failed}),
        "restart_seconds": round(back_at - restart_began, 2),
        "recovered_seconds_after_postgres_was_back": round(max(0.0, first_ok - back_at), 2),
        "last_failure_seconds_after_restart_began": round(
            max((a for _, a, _, _ in failed), default=restart_began) - restart_began, 2
        ),
    }
    print("restart figures:", json.dumps(figures))

    assert len(log) > 200, "too little load to mean anything"
    # At most one failed request per worker: the requests in flight when the server went away.
    assert len(failed) <= workers, figures
    for *_, reply in failed:
        assert_json_503(reply)  # never a 500, a hang or a dropped connection
    # Recovered by itself, within seconds, and stayed recovered. The bound is psycopg_pool's
    # reconnect backoff (1 s, then 2 s, then 4 s after failed attempts during the shutdown).
    assert first_ok - back_at < 8, figures
    assert all(reply.status in (200, 201) for sent, _, _, reply in after if sent >= back_at + 3), figures
    # No worker died or was replaced.
    assert server.process.poll() is None
    assert server.worker_pids() == pids
    # Nothing lost: every acknowledged append is stored, sequences have no gap.
    acknowledged = sum(1 for _, _, kind, reply in log if kind == "append" and reply.status == 201)
    unanswered = sum(1 for _, _, kind, reply in failed if kind == "append")
    with service.pg.connect("app") as conn:
        sequences = [
            row[0]
            for row in conn.execute(
                "SELECT sequence FROM session_messages WHERE session_id = %s ORDER BY sequence", [session_id]
            )
        ]
        (total,) = conn.execute("SELECT total_messages FROM sessions WHERE id = %s", [session_id]).fetchone()
    assert sequences == list(range(1, len(sequences) + 1))
    assert total == len(sequences)
    # An append whose connection died mid-commit may have been stored without its answer.
    assert acknowledged <= len(sequences) <= acknowledged + unanswered


def test_health_reports_the_database_down_quickly_and_healthy_again(service, start_gunicorn):
    server = start_gunicorn(workers=2, DB_POOL_TIMEOUT="30")
    url = f"{server.url}/health"
    assert http("GET", url).status == 200

    service.pg.stop("fast")
    try:
        down = [http("GET", url, timeout=30) for _ in range(4)]
    finally:
        service.pg.start()
    back_at = time.monotonic()
    for reply in down:
        assert reply.status == 503, reply.body
        body = reply.json()
        assert body["status"] == "unhealthy" and body["components"][0]["status"] == "unhealthy"
        # It waits at most HEALTH_TIMEOUT (2 s), not the 30 s pool timeout.
        assert reply.seconds < 3, reply.seconds

    while (reply := http("GET", url)).status != 200:
        assert time.monotonic() - back_at < 10, "still unhealthy 10 s after the database came back"
        time.sleep(0.1)
    assert reply.json()["status"] == "healthy"
    print("health figures:", json.dumps({"healthy_again_after_seconds": round(time.monotonic() - back_at, 2)}))


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
    bouncer.stop()


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
