"""Two stateless app hosts (gunicorn on two ports) sharing one PostgreSQL and one cache behave as one
service: the same rate limits, the admin's shown-once raw key, the admin's login throttle, and a
host SIGKILLed under load loses no write it answered 201 for. Run once with Redis and once with
the database cache as the shared cache.

An ``Idempotency-Key`` used on one host replays on the other. A case for another cross-host
contract goes in as one more test taking ``two_hosts`` (its ``seed`` makes users and keys in the
service's own environment).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Any

import pytest
from django.db import connection

from tests.conftest import database_url
from tests.reliability.servers import BASE_DIR, Gunicorn, PrivateRedis, http, service_env

pytestmark = pytest.mark.slow

FREE_LIMIT = 10
LOGIN_LIMIT = 4
PASSWORD = "two-hosts-Correct-horse-9"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private Redis (redis-server on a free port), else the machine's on 127.0.0.1:6379."""
    if PrivateRedis.binary():
        server = PrivateRedis()
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
        return
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        if os.environ.get("CI_REQUIRE_REDIS"):
            pytest.fail("CI needs redis-server (.ci/run installs it)")
        pytest.skip("neither redis-server nor a Redis on 127.0.0.1:6379: the Redis half of the two-host tests")
    yield "redis://127.0.0.1:6379/0"


_SEED = """
import django, json, sys
django.setup()
from accounts.models import User
from accounts.services import user_create
from apikeys.services import api_key_create
from agent_sessions.services import session_create
kind, email = sys.argv[1], sys.argv[2]
if kind == "admin":
    user = User.objects.create_superuser(email=email, password=sys.argv[3])
    print(json.dumps({"user_id": str(user.pk)}))
else:
    user = user_create(actor=None, email=email, name="Hosts", roles=["user"])
    key, raw = api_key_create(actor=None, owner=user, name="hosts", scopes=("read", "write"), rate_limit_tier=kind)
    sessions = [str(session_create(actor=None, owner=user, agent_id="hosts", title=f"s{n}").pk) for n in range(4)]
    print(json.dumps({"user_id": str(user.pk), "raw_key": raw, "sessions": sessions}))
"""


@dataclass
class TwoHosts:
    a: Gunicorn
    b: Gunicorn
    env: dict[str, str]

    def seed(self, kind: str, *extra: str) -> dict[str, Any]:
        """A user with a ``kind`` key (free, pro, enterprise) and four sessions, or an ``admin``."""
        email = f"hosts-{uuid.uuid4().hex[:10]}@example.com"
        result = subprocess.run(
            [sys.executable, "-c", _SEED, kind, email, *extra],
            env=self.env,
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return {"email": email, **json.loads(result.stdout.strip().splitlines()[-1])}


@pytest.fixture(params=["redis", "database"])
def two_hosts(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[TwoHosts]:
    extra: dict[str, str] = {}
    if request.param == "redis":
        extra["REDIS_URL"] = request.getfixturevalue("redis_url")
    env = service_env(
        database_url(connection.settings_dict["NAME"]),
        DB_POOL_SIZE="1",
        DB_MAX_OVERFLOW="4",
        RATE_LIMIT_FREE=f"{FREE_LIMIT}/hour",
        # A day's window: a minute's could roll over between two attempts and reset the count.
        ADMIN_LOGIN_RATE=f"{LOGIN_LIMIT}/day",
        # Each test's client address is its own (X-Forwarded-For from this loopback "proxy"), so
        # throttles counted per address never meet another test's in the shared cache.
        TRUSTED_PROXIES="127.0.0.1",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        **extra,
    )
    a, b = Gunicorn(env, workers=2, threads=4), Gunicorn(env, workers=2, threads=4)
    a.start()
    b.start()
    try:
        yield TwoHosts(a, b, env)
    finally:
        output = a.stop() + b.stop()
        from django.core.cache import cache

        cache.clear()  # the database cache's counters: the flush between tests leaves that table
    assert "Traceback" not in output, output[-5000:]


def _client_ip() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


def test_a_free_keys_hourly_limit_holds_exactly_across_both_hosts(two_hosts: TwoHosts) -> None:
    user = two_hosts.seed("free")
    hosts = [two_hosts.a, two_hosts.b]
    statuses: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> None:
        reply = http("GET", f"{hosts[n % 2].url}/api/v1/sessions/", key=user["raw_key"])
        with lock:
            statuses.append(reply.status)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(FREE_LIMIT * 2 + 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] * FREE_LIMIT + [429] * (FREE_LIMIT + 4)
    for host in hosts:  # whichever host answers next, the hour is used up
        assert http("GET", f"{host.url}/api/v1/sessions/", key=user["raw_key"]).status == 429


def test_an_idempotency_key_used_on_one_host_replays_on_the_other(two_hosts: TwoHosts) -> None:
    user = two_hosts.seed("enterprise")
    session_id = user["sessions"][0]
    path = f"/api/v1/sessions/{session_id}/messages/batch/"
    body = {"messages": [{"role": "user", "content": "once"}, {"role": "assistant", "content": "only once"}]}
    key = {"Idempotency-Key": f"hosts-{uuid.uuid4()}"}
    first = http("POST", f"{two_hosts.a.url}{path}", key=user["raw_key"], body=body, headers=key)
    assert first.status == 201, first.body
    again = http("POST", f"{two_hosts.b.url}{path}", key=user["raw_key"], body=body, headers=key)
    assert again.status == 201 and again.headers.get("Idempotent-Replayed") == "true", (again.status, again.headers)
    assert json.loads(again.body) == json.loads(first.body)
    other = http(
        "POST",
        f"{two_hosts.b.url}{path}",
        key=user["raw_key"],
        body={**body, "messages": body["messages"][:1]},
        headers=key,
    )
    assert other.status == 422 and json.loads(other.body)["code"] == "idempotency_key_reused", other.body
    listed = http("GET", f"{two_hosts.a.url}/api/v1/sessions/{session_id}/messages/", key=user["raw_key"])
    assert [m["content"] for m in json.loads(listed.body)["results"]] == ["once", "only once"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Browser:
    """A staff member's browser: one cookie jar (the admin's session cookie is for 127.0.0.1 on any
    port, so it travels between the hosts like a load balancer's users' cookies do)."""

    def __init__(self, client_ip: str) -> None:
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)
        self.client_ip = client_ip

    def request(self, method: str, url: str, form: dict[str, Any] | None = None) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(form or {}, doseq=True).encode() if form is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("X-Forwarded-For", self.client_ip)
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(), response.headers.get("Location", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace"), exc.headers.get("Location", "")

    def csrf(self, host: Gunicorn, path: str) -> str:
        status, body, _ = self.request("GET", f"{host.url}{path}")
        assert status == 200, body[:500]
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
        assert found, body[:500]
        return found.group(1)

    def login(self, host: Gunicorn, email: str, password: str) -> tuple[int, str, str]:
        token = self.csrf(host, "/admin/login/")
        form = {"csrfmiddlewaretoken": token, "username": email, "password": password, "next": "/admin/"}
        return self.request("POST", f"{host.url}/admin/login/", form)


RAW_KEY = re.compile(r"sk_live_[A-Za-z0-9]{30,}")


def test_an_admin_key_made_on_one_host_is_shown_once_on_the_other_and_never_again(two_hosts: TwoHosts) -> None:
    admin = two_hosts.seed("admin", PASSWORD)
    owner = two_hosts.seed("pro")
    browser = Browser(_client_ip())
    status, body, location = browser.login(two_hosts.a, admin["email"], PASSWORD)
    assert status == 302, body[:500]

    token = browser.csrf(two_hosts.a, "/admin/apikeys/apikey/add/")
    form = {
        "csrfmiddlewaretoken": token,
        "user": owner["user_id"],
        "name": "made on host A",
        "scopes": ["read"],
        "rate_limit_tier": "pro",
        "expires_at": "",
    }
    status, body, location = browser.request("POST", f"{two_hosts.a.url}/admin/apikeys/apikey/add/", form)
    assert status == 302 and "/revealed/" in location, (status, body[:1000])
    path = urllib.parse.urlsplit(location).path

    status, shown, _ = browser.request("GET", f"{two_hosts.b.url}{path}")
    assert status == 200
    (raw,) = set(RAW_KEY.findall(shown))
    reply = http("GET", f"{two_hosts.a.url}/api/v1/users/me/", key=raw)
    assert reply.status == 200 and reply.json()["email"] == owner["email"]

    for host in (two_hosts.b, two_hosts.a):
        status, again, _ = browser.request("GET", f"{host.url}{path}")
        assert raw not in again
        assert not RAW_KEY.findall(again)


def test_failed_admin_logins_are_counted_across_hosts(two_hosts: TwoHosts) -> None:
    admin = two_hosts.seed("admin", PASSWORD)
    browser = Browser(_client_ip())
    hosts = [two_hosts.a, two_hosts.b]
    for attempt in range(LOGIN_LIMIT - 1):
        status, body, _ = browser.login(hosts[attempt % 2], admin["email"], "wrong password")
        assert status == 200, (attempt, status)  # the form again, with its error
    status, body, _ = browser.login(hosts[(LOGIN_LIMIT - 1) % 2], admin["email"], "wrong password")
    assert status == 429, (status, body[:300])
    for host in hosts:  # even the right password, on either host, until the window ends
        status, body, _ = browser.login(host, admin["email"], PASSWORD)
        assert status == 429, (status, body[:300])
    # Another client address is not affected.
    status, _, _ = Browser(_client_ip()).login(two_hosts.b, admin["email"], PASSWORD)
    assert status == 302


def _kill(server: Gunicorn) -> None:
    """SIGKILL the master and every worker at once: the host is gone, as when its machine dies."""
    assert server.process is not None
    for pid in [*server.worker_pids(), server.process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def _all_messages(host: Gunicorn, key: str, session_id: str) -> set[str]:
    found: set[str] = set()
    url: str | None = f"{host.url}/api/v1/sessions/{session_id}/messages/?page_size=200"
    while url:
        reply = http("GET", url, key=key)
        assert reply.status == 200, reply.body[:300]
        body = reply.json()
        found.update(message["id"] for message in body["results"])
        url = body.get("next")
    return found


def test_a_host_killed_under_load_loses_no_write_it_answered_201_for(two_hosts: TwoHosts) -> None:
    user = two_hosts.seed("enterprise")
    acknowledged: dict[str, list[str]] = {session: [] for session in user["sessions"]}
    stop = threading.Event()
    other_errors: list[str] = []

    def writer(session_id: str, on: Callable[[], Gunicorn]) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            reply = http(
                "POST",
                f"{on().url}/api/v1/sessions/{session_id}/messages/",
                key=user["raw_key"],
                body={"role": "user", "content": f"write {n}"},
                timeout=10,
            )
            if reply.status == 201:
                acknowledged[session_id].append(reply.json()["id"])
            elif reply.status != 0:  # a refused connection or a reset: the host is dead
                other_errors.append(f"{reply.status} {reply.body[:200]!r}")

    threads = [
        threading.Thread(target=writer, args=(session, (lambda: two_hosts.a) if n % 2 else (lambda: two_hosts.b)))
        for n, session in enumerate(user["sessions"])
    ]
    for thread in threads:
        thread.start()
    try:
        deadline_writes, give_up = 40, time.monotonic() + 60
        while sum(len(ids) for ids in acknowledged.values()) < deadline_writes and time.monotonic() < give_up:
            time.sleep(0.05)
        _kill(two_hosts.a)
        time.sleep(1.0)  # host B keeps writing after A is gone
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert other_errors == [], other_errors[:5]
    assert sum(len(ids) for ids in acknowledged.values()) >= deadline_writes
    for session_id, ids in acknowledged.items():
        readable = _all_messages(two_hosts.b, user["raw_key"], session_id)
        missing = set(ids) - readable
        assert not missing, f"{len(missing)} acknowledged writes lost in {session_id}"
