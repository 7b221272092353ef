"""The production server, for real: gunicorn with config/gunicorn.conf.py on a scratch database.

* SIGTERM lets the request in flight finish (2xx), then the master exits 0 and every
  connection the workers' pools held is closed.
* With LOG_FORMAT=json each request is one JSON line with method, path, status, duration and
  request id, and no key, hash, password or message content appears anywhere in the output.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import BASE_DIR, _conninfo, run_manage, run_python

pytestmark = pytest.mark.django_db

PASSWORD = "Quiet-Harbor-Lantern-4821"
CONTENT = "the-private-message-body-5d1c"
SEARCH = "private-search-term-77e0"

SETUP = """
import json, django
django.setup()
from accounts.services import user_create
from agent_sessions.services import session_create
from apikeys.services import api_key_create

admin = user_create(actor=None, email="ops-admin@example.com", name="Ops Admin", roles=["admin"])
_, admin_key = api_key_create(
    actor=None, owner=admin, name="ops", scopes=["read", "write", "admin"], rate_limit_tier="enterprise"
)
user = user_create(actor=None, email="ops-user@example.com", name="Ops User", roles=["user"])
_, user_key = api_key_create(actor=None, owner=user, name="ops", scopes=["read", "write"], rate_limit_tier="enterprise")
session = session_create(actor=None, owner=user, agent_id="agent", title="in flight")
print(json.dumps({"admin_key": admin_key, "user_key": user_key, "session": str(session.pk)}))
"""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def request(self, method: str, path: str, *, key: str | None = None, body: Any = None) -> tuple[int, dict, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            return response.status, dict(response.getheaders()), json.loads(raw) if raw else None
        finally:
            conn.close()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _dbname(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["dbname"]


def _backends(dbname: str, *, waiting_on_lock: bool = False) -> int:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
    if waiting_on_lock:
        sql += " AND wait_event_type = 'Lock'"
    with psycopg.connect(**_conninfo("postgres"), autocommit=True) as conn:
        return conn.execute(sql, [dbname]).fetchone()[0]


@pytest.fixture
def database(scratch_database) -> tuple[str, dict[str, str]]:
    url = scratch_database()
    migrated = run_manage("migrate", "--noinput", env={"DATABASE_URL": url})
    assert migrated.returncode == 0, migrated.stderr
    setup = run_python(SETUP, env={"DATABASE_URL": url})
    assert setup.returncode == 0, setup.stderr
    return url, json.loads(setup.stdout.strip().splitlines()[-1])


@pytest.fixture
def server(database, tmp_path) -> Iterator[Server]:
    url, _ = database
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "DEBUG": "false",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or "gunicorn-test-secret-key-0123456789abcdefghijklmnop",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_MANIFEST": "false",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "GUNICORN_GRACEFUL_TIMEOUT": "30",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(process=process, port=port, log=log)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            return running.request("GET", "/health")[0] == 200
        except OSError:
            return False

    try:
        _wait_for(healthy, timeout=30, what="gunicorn to answer /health")
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0_with_its_connections_closed(database, server):
    url, data = database
    dbname = _dbname(url)
    path = f"/api/v1/sessions/{data['session']}/messages/"
    result: dict[str, Any] = {}

    def append() -> None:
        try:
            result["response"] = server.request(
                "POST", path, key=data["user_key"], body={"role": "user", "content": "x"}
            )
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    # Hold the session row: the append's UPDATE waits on it, so the request is truly in flight
    # (inside a worker, in the database) when SIGTERM arrives.
    with psycopg.connect(url) as holder:
        holder.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", [data["session"]])
        client = threading.Thread(target=append)
        client.start()
        _wait_for(lambda: _backends(dbname, waiting_on_lock=True) == 1, timeout=20, what="the append to block")
        assert _backends(dbname) > 1  # the holder and the workers' pooled connections

        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert server.process.poll() is None, "gunicorn quit with a request in flight"
        assert "response" not in result
        holder.rollback()

    client.join(timeout=30)
    assert "error" not in result, result.get("error")
    status, _, body = result["response"]
    assert status == 201 and body["sequence"] == 1
    assert server.process.wait(timeout=40) == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "WORKER TIMEOUT" not in log
    # worker_exit closed the pools: nothing of the server is left connected.
    _wait_for(lambda: _backends(dbname) == 0, timeout=10, what="the server's connections to close")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM session_messages").fetchone()[0] == 1


def test_json_request_logs_carry_the_fields_and_no_secrets(database, server):
    url, data = database
    key, admin_key, session = data["user_key"], data["admin_key"], data["session"]
    request_ids: dict[str, str] = {}

    def call(label: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, headers, body = server.request(method, path, **kwargs)
        request_ids[label] = headers["X-Request-ID"]
        return status, body

    assert (
        call(
            "append",
            "POST",
            f"/api/v1/sessions/{session}/messages/",
            key=key,
            body={"role": "user", "content": CONTENT},
        )[0]
        == 201
    )
    assert call("read", "GET", f"/api/v1/sessions/{session}/messages/", key=key)[0] == 200
    assert call("search", "GET", f"/api/v1/sessions/?search={SEARCH}", key=key)[0] == 200
    created = call(
        "user",
        "POST",
        "/api/v1/users/",
        key=admin_key,
        body={"email": "new-ops@example.com", "name": "New", "password": PASSWORD},
    )
    assert created[0] == 201, created
    new_key = call("key", "POST", "/api/v1/api-keys/", key=key, body={"name": "fresh"})
    assert new_key[0] == 201
    assert call("bad key", "GET", "/api/v1/sessions/", key=key[:-4] + "abcd")[0] == 401
    assert server.stop() == 0

    text = server.log.read_text()
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = {entry["request_id"]: entry for entry in entries if entry.get("logger") == "request"}
    for label, request_id in request_ids.items():
        entry = requests.get(request_id)
        assert entry is not None, f"no request log line for {label}"
        assert {
            "time",
            "level",
            "method",
            "path",
            "status",
            "duration_ms",
            "request_id",
            "user_id",
            "client_ip",
        } <= set(entry)
        assert isinstance(entry["duration_ms"], (int, float)) and entry["duration_ms"] >= 0
    append = requests[request_ids["append"]]
    assert (append["method"], append["path"], append["status"]) == (
        "POST",
        f"/api/v1/sessions/{session}/messages/",
        201,
    )
    assert append["level"] == "info" and append["client_ip"] == "127.0.0.1" and append["user_id"]
    assert requests[request_ids["search"]]["path"] == "/api/v1/sessions/"  # no query string
    assert requests[request_ids["bad key"]]["status"] == 401

    with psycopg.connect(url) as conn:
        key_hashes = [row[0] for row in conn.execute("SELECT key_hash FROM api_keys")]
        password_hash = conn.execute(
            "SELECT hashed_password FROM users WHERE email = 'new-ops@example.com'"
        ).fetchone()[0]
    secrets = {
        "raw key": key,
        "admin raw key": admin_key,
        "new raw key": new_key[1]["key"],
        "password": PASSWORD,
        "password hash": password_hash,
        "message content": CONTENT,
        "search term": SEARCH,
        **{f"key hash {i}": h for i, h in enumerate(key_hashes)},
    }
    assert len(key_hashes) == 3
    leaked = [name for name, value in secrets.items() if value in text]
    assert not leaked, f"found in the server's output: {leaked}"
