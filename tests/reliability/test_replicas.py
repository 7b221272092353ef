"""Two app hosts on a primary with a streaming standby (DATABASE_REPLICA_URLS): lists come from the
standby, a client reads its own writes through any host, and a standby stopped under load costs
no request. The standby's replay is paused to make replication lag real and visible."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.servers import BASE_DIR, Gunicorn, http, service_env

pytestmark = pytest.mark.slow

_SEED = """
import django, json, sys
django.setup()
from accounts.services import user_create
from apikeys.services import api_key_create
from agent_sessions.services import session_create
user = user_create(actor=None, email=sys.argv[1], name="Replica", roles=["user"])
key, raw = api_key_create(actor=None, owner=user, name="replica", scopes=("read", "write"), rate_limit_tier="enterprise")
session = session_create(actor=None, owner=user, agent_id="replica", title="replica")
print(json.dumps({"raw_key": raw, "session_id": str(session.pk)}))
"""


def seed_user(env: dict[str, str]) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", _SEED, f"replica-{uuid.uuid4().hex[:10]}@example.com"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def hosts(streaming_replication: Any) -> Iterator[tuple[Gunicorn, Gunicorn, dict[str, str]]]:
    pair = streaming_replication
    env = service_env(
        pair.primary_url,
        DATABASE_REPLICA_URLS=pair.standby_url,
        REPLICA_STICKY_SECONDS="3",
        # Lag is made on purpose here (replay paused): the standby stays in use while it lasts.
        REPLICA_MAX_LAG_SECONDS="60",
        DB_POOL_SIZE="1",
        DB_MAX_OVERFLOW="4",
    )
    a, b = Gunicorn(env, workers=2, threads=4), Gunicorn(env, workers=2, threads=4)
    a.start()
    b.start()
    try:
        yield a, b, env
    finally:
        outputs = a.stop() + b.stop()
        pair.standby.resume_replay()
    assert "Traceback" not in outputs, outputs[-5000:]


def _messages(host: Gunicorn, user: dict[str, str]) -> list[str]:
    reply = http("GET", f"{host.url}/api/v1/sessions/{user['session_id']}/messages/", key=user["raw_key"])
    assert reply.status == 200, reply.body
    return [message["id"] for message in reply.json()["results"]]


def _append(host: Gunicorn, user: dict[str, str], content: str) -> str:
    reply = http(
        "POST",
        f"{host.url}/api/v1/sessions/{user['session_id']}/messages/",
        key=user["raw_key"],
        body={"role": "user", "content": content},
    )
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


def _warm(hosts: tuple[Gunicorn, ...], user: dict[str, str]) -> None:
    """Every worker's monitor has checked the standby at least once (it starts on first use)."""
    for _ in range(3):
        for host in hosts:
            for _ in range(8):
                _messages(host, user)
        time.sleep(1.2)
    for host in hosts:
        replicas = [c for c in http("GET", f"{host.url}/health").json()["components"] if c["name"] == "replica"]
        assert [r["details"]["state"] for r in replicas] == ["streaming"], replicas


def test_a_client_reads_its_own_write_through_the_other_host_while_lists_come_from_the_standby(
    streaming_replication: Any, hosts: tuple[Gunicorn, Gunicorn, dict[str, str]]
) -> None:
    pair = streaming_replication
    a, b, env = hosts
    alice = seed_user(env)
    pair.wait_caught_up()
    _warm((a, b), alice)

    pair.standby.pause_replay()
    try:
        written = _append(a, alice, "written through host A")
        # At once, through host B: alice wrote, so her reads are the primary's for 3 seconds.
        assert written in _messages(b, alice)

        time.sleep(3.5)
        # No longer sticky: her list comes from the standby, whose replay is paused.
        assert written not in _messages(b, alice)
        assert written not in _messages(a, alice)
        detail = http("GET", f"{b.url}/api/v1/sessions/{alice['session_id']}/", key=alice["raw_key"])
        assert detail.status == 200 and detail.json()["total_messages"] == 1  # details: the primary
    finally:
        pair.standby.resume_replay()
    pair.wait_caught_up()
    assert written in _messages(b, alice)


def test_a_standby_stopped_under_load_fails_no_request(
    streaming_replication: Any, hosts: tuple[Gunicorn, Gunicorn, dict[str, str]]
) -> None:
    pair = streaming_replication
    a, b, env = hosts
    alice = seed_user(env)
    pair.wait_caught_up()
    _warm((a, b), alice)
    url = f"/api/v1/sessions/{alice['session_id']}/messages/"
    stop = threading.Event()
    failures: list[str] = []
    counts = {"ok": 0}
    lock = threading.Lock()

    def client(host: Gunicorn) -> None:
        while not stop.is_set():
            reply = http("GET", f"{host.url}{url}", key=alice["raw_key"], timeout=10)
            with lock:
                if reply.status == 200:
                    counts["ok"] += 1
                else:
                    failures.append(f"{reply.status} {reply.error} {reply.body[:200]!r}")

    threads = [threading.Thread(target=client, args=(host,)) for host in (a, b) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        pair.standby.stop()
        time.sleep(3)
        down = [c for c in http("GET", f"{a.url}/health").json()["components"] if c["name"] == "replica"]
    finally:
        if not pair.standby.is_running():
            pair.standby.start()
        time.sleep(1.5)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert failures == [], failures[:5]
    assert counts["ok"] > 50
    assert [r["details"]["state"] for r in down] == ["unreachable"]
    pair.wait_caught_up()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = [c["details"]["state"] for c in http("GET", f"{a.url}/health").json()["components"][1:]]
        if states == ["streaming"]:
            break
        time.sleep(0.3)
    assert states == ["streaming"]
