"""The benchmark behind `make bench` (see bench/README.md).

Starts the service as in production (gunicorn sync workers, DB_POOL_MODE=pool) against a
benchmark database, seeds it, drives load with wrk from outside the process on 127.0.0.1, and
reports each endpoint as a ratio to a bare Django hello view served the same way in the same
run. Then measures cost growth: append, message-page, key-authentication and audit-page
latency as the tables grow. Writes the tables to bench/results/.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
RESULTS = BASE / "bench" / "results"
WRK_POST = BASE / "bench" / "wrk" / "post_messages.lua"
sys.path.insert(0, str(BASE))


# --- plumbing -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve_database(name: str) -> str:
    """DATABASE_URL as given, or a dedicated database on the embedded server."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    import psycopg

    from config.db import embedded_postgres

    embedded_postgres.ensure_running()
    socket_dir = str(embedded_postgres._server().get_postmaster_info().socket_dir)
    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@/{name}?host={socket_dir}"


def service_env(
    database_url: str,
    port: int,
    workers: int | None = None,
    worker_class: str | None = None,
    threads: int | None = None,
) -> dict[str, str]:
    """The production settings (config/gunicorn.conf.py's defaults unless a gunicorn variable is given)."""
    tuning = {
        "WEB_CONCURRENCY": workers,
        "GUNICORN_WORKER_CLASS": worker_class,
        "GUNICORN_THREADS": threads,
    }
    return {
        **os.environ,
        **{name: str(value) for name, value in tuning.items() if value is not None},
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": "benchmark-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "SECURE_SSL_REDIRECT": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DB_POOL_MODE": os.environ.get("DB_POOL_MODE", "pool"),
        # The free tier stays counted on every request (one counter hit each) but is never refused.
        "RATE_LIMIT_FREE": "1000000000/hour",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "BENCH_ENDPOINTS": "true",
        "STATIC_MANIFEST": "false",
        # The cost-growth series needs a session with 100,000 messages.
        "SESSION_MAX_MESSAGES": "10000000",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "info"),
        "LOG_FORMAT": "json",
    }


def gunicorn_settings(env: dict[str, str]) -> dict[str, object]:
    """What config/gunicorn.conf.py resolves to under ``env``: workers, worker class, threads."""
    import runpy

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        conf = runpy.run_path(str(BASE / "config" / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"workers": conf["workers"], "worker_class": conf["worker_class"], "threads": conf.get("threads", 1)}


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, str(BASE / "manage.py"), *args], env=env, cwd=BASE, check=True)


def bare_env(env: dict[str, str], port: int) -> dict[str, str]:
    """The floor: the bare Django hello app (bench/bare) with the service's gunicorn settings."""
    return {**env, "PORT": str(port), "DJANGO_SETTINGS_MODULE": "bench.bare.settings"}


class Server:
    """gunicorn with the service's own config file; ``app`` is the WSGI module it serves."""

    def __init__(
        self, env: dict[str, str], port: int, log_path: Path, app: str = "config.wsgi", ready: str = "/health/live"
    ) -> None:
        self.port = port
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.conf.py", app],
            env=env,
            cwd=BASE,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start; see {log_path}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# --- wrk --------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    ratio: float | None = None
    extra: dict[str, object] = field(default_factory=dict)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparsable latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    name: str,
    url: str,
    *,
    connections: int,
    duration: int,
    key: str | None = None,
    script: Path | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    threads = max(1, min(connections, os.cpu_count() or 1))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if key and script is None:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=True).stdout
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Result(name, connections, rps, p50, p99, errors, requests)


class ConnectionSampler:
    """Samples pg_stat_activity for the benchmark database while load runs."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.max_open = 0
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            me = conn.info.backend_pid
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s", [me]
                ).fetchall()
                self.max_open = max(self.max_open, len(rows))
                self.pids.update(r[0] for r in rows)
                time.sleep(0.2)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- seeding ----------------------------------------------------------------------------------


def seed(database_url: str, spread_sessions: int) -> dict[str, object]:
    """Realistic data through the services, bulk filler through SQL. Returns ids and raw keys."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "benchmark-only")
    os.environ["DEBUG"] = "false"
    os.environ["STATIC_MANIFEST"] = "false"
    os.environ["SESSION_MAX_MESSAGES"] = "10000000"
    import django

    django.setup()
    from django.db import connection

    from accounts.services import user_create
    from agent_sessions.models import Session
    from agent_sessions.services import session_append_message, session_create
    from apikeys.services import api_key_create

    user = user_create(actor=None, email="bench@example.com", name="Bench", roles=["user"])
    admin = user_create(actor=None, email="bench-admin@example.com", name="Bench Admin", roles=["admin"])
    _, key = api_key_create(
        actor=None, owner=user, name="bench", scopes=["read", "write"], rate_limit_tier="enterprise"
    )
    _, admin_key = api_key_create(
        actor=None, owner=admin, name="bench admin", scopes=["read", "write", "admin"], rate_limit_tier="enterprise"
    )
    _, free_key = api_key_create(
        actor=None, owner=user, name="bench free", scopes=["read", "write"], rate_limit_tier="free"
    )
    for i in range(3):
        api_key_create(actor=None, owner=user, name=f"spare {i}", scopes=["read"], rate_limit_tier="enterprise")

    spread = []
    for i in range(spread_sessions):
        session = session_create(actor=None, owner=user, agent_id=f"agent-{i % 7}", title=f"Conversation {i}")
        spread.append(str(session.pk))
    hot = session_create(actor=None, owner=user, agent_id="agent-hot", title="Hot session")
    paged = session_create(actor=None, owner=user, agent_id="agent-0", title="Paged session")
    for i in range(120):
        session_append_message(
            session_id=paged.pk, role="user" if i % 2 == 0 else "assistant", content=f"message {i} " * 8, token_count=20
        )
    # Some history on the spread sessions, as real conversations have.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH s AS (SELECT id FROM sessions WHERE id = ANY(%s::uuid[]))
            INSERT INTO session_messages (id, session_id, sequence, role, content, metadata, token_count, created_at)
            SELECT gen_random_uuid(), s.id, g, CASE WHEN g %% 2 = 1 THEN 'user' ELSE 'assistant' END,
                   repeat('earlier message text ', 6), '{}', 15, now()
              FROM s, generate_series(1, 20) g
            """,
            [spread],
        )
        cursor.execute(
            "UPDATE sessions SET total_messages = 20, total_tokens = 300 WHERE id = ANY(%s::uuid[])", [spread]
        )
        cursor.execute("ANALYZE")
    growth = {}
    for size in (10, 1_000, 100_000):
        session = session_create(actor=None, owner=user, agent_id="agent-growth", title=f"{size} messages")
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO session_messages (id, session_id, sequence, role, content, metadata, token_count, created_at)
                SELECT gen_random_uuid(), %s, g, 'user', repeat('x', 120), '{}', 10, now() FROM generate_series(1, %s) g
                """,
                [session.pk, size],
            )
            cursor.execute(
                "UPDATE sessions SET total_messages = %s, total_tokens = %s WHERE id = %s",
                [size, size * 10, session.pk],
            )
        growth[size] = str(session.pk)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    assert Session.objects.count() >= spread_sessions
    connection.close()
    return {
        "key": key,
        "free_key": free_key,
        "admin_key": admin_key,
        "spread": spread,
        "hot": str(hot.pk),
        "paged": str(paged.pk),
        "growth": growth,
    }


def fill_keys(database_url: str, total: int) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        # The service's 30 s statement timeout (a role default) is not for bulk filler.
        conn.execute("SET statement_timeout = 0")
        owner = conn.execute("SELECT id FROM users WHERE email = 'bench@example.com'").fetchone()[0]
        have = conn.execute("SELECT count(*) FROM api_keys").fetchone()[0]
        missing = max(0, total - have)
        if missing:
            conn.execute(
                """
                INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, key_hint, scopes, rate_limit_tier,
                                      created_at, updated_at)
                SELECT gen_random_uuid(), %s, 'filler', encode(sha256(('filler-' || g)::bytea), 'hex'), 'sk_live',
                       'sk_live_fill…fill', '["read"]', 'free', now(), now()
                  FROM generate_series(1, %s) g
                """,
                [owner, missing],
            )
            conn.execute("ANALYZE api_keys")
        return conn.execute("SELECT count(*) FROM api_keys").fetchone()[0]


def fill_audit(database_url: str, total: int) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        # The service's 30 s statement timeout (a role default) is not for bulk filler.
        conn.execute("SET statement_timeout = 0")
        have = conn.execute("SELECT count(*) FROM audit_logs").fetchone()[0]
        missing = max(0, total - have)
        if missing:
            conn.execute(
                """
                INSERT INTO audit_logs (id, created_at, updated_at, timestamp, user_id, action, resource_type,
                                        resource_id, ip_address, user_agent, request_id, request_path,
                                        request_method, response_status, changes)
                SELECT gen_random_uuid(), now(), now(), now() - (g || ' seconds')::interval, gen_random_uuid(),
                       (ARRAY['CREATE','UPDATE','DELETE'])[1 + g %% 3], 'session', g::text, '127.0.0.1',
                       'bench', gen_random_uuid(), '/api/v1/sessions/', 'POST', 201, '{"title": {"old": null, "new": "x"}}'
                  FROM generate_series(1, %s) g
                """,
                [missing],
            )
            conn.execute("ANALYZE audit_logs")
        return conn.execute("SELECT count(*) FROM audit_logs").fetchone()[0]


# --- admin index at 1,000,000 messages and 1,000,000 audit rows --------------------------------


def admin_index(base: str, database_url: str, *, total: int = 1_000_000, requests: int = 30) -> dict[str, float]:
    """GET /admin/ as a superuser (the activity dashboard) once the bench database holds
    ``total`` messages over 60 days (20 agents) and ``total`` audit rows (2% failed
    authentications, 60 days). Times the first request, which rolls up the settled days once,
    then ``requests`` more, one at a time."""
    import http.cookies
    import urllib.error
    import urllib.parse

    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        owner = conn.execute("SELECT id FROM users WHERE email = 'bench@example.com'").fetchone()[0]
        missing = total - conn.execute("SELECT count(*) FROM session_messages").fetchone()[0]
        if missing > 0:
            sessions = max(1, missing // 50)
            conn.execute(
                """
                INSERT INTO sessions (id, user_id, agent_id, title, status, context, metadata, total_messages,
                                      total_tokens, last_activity_at, created_at, updated_at)
                SELECT gen_random_uuid(), %s, 'dash-agent-' || (g %% 20), 'dashboard filler', 'completed', '{}', '{}',
                       50, 750, now() - make_interval(secs => (%s - g) * 5184000.0 / %s),
                       now() - make_interval(secs => (%s - g) * 5184000.0 / %s), now()
                  FROM generate_series(1, %s) g
                """,
                [owner, sessions, sessions, sessions, sessions, sessions],
            )
            conn.execute(
                """
                INSERT INTO session_messages (id, session_id, sequence, role, content, metadata, token_count, created_at)
                SELECT gen_random_uuid(), s.id, g, 'user', repeat('filler ', 10), '{}', 15, s.created_at + make_interval(secs => g)
                  FROM (SELECT id, created_at FROM sessions WHERE title = 'dashboard filler') s, generate_series(1, 50) g
                 ORDER BY s.created_at + make_interval(secs => g)
                """
            )
        missing = total - conn.execute("SELECT count(*) FROM audit_logs").fetchone()[0]
        if missing > 0:
            conn.execute(
                """
                INSERT INTO audit_logs (id, created_at, updated_at, timestamp, user_id, action, resource_type,
                                        resource_id, ip_address, request_id, changes)
                SELECT gen_random_uuid(), now(), now(), now() - make_interval(secs => g * 5184000.0 / %s),
                       gen_random_uuid(), CASE WHEN g %% 50 = 0 THEN 'FAILED_AUTH' ELSE 'UPDATE' END, 'session',
                       g::text, '127.0.0.1', gen_random_uuid(), '{"title": {"old": "a", "new": "b"}}'
                  FROM generate_series(1, %s) g
                """,
                [missing, missing],
            )
        conn.execute("VACUUM ANALYZE session_messages")
        conn.execute("VACUUM ANALYZE audit_logs")
        conn.execute("ANALYZE")
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM session_messages), (SELECT count(*) FROM audit_logs)"
        ).fetchone()

    from accounts.models import User
    from accounts.services import user_create

    password = "bench-admin-password-0123456789"
    if not User.objects.filter(email="bench-root@example.com").exists():
        user_create(
            actor=None,
            email="bench-root@example.com",
            name="Root",
            password=password,
            is_staff=True,
            is_superuser=True,
            roles=["super_admin"],
        )
    # By hand: the service's cookies are Secure (DEBUG off), which a cookie jar keeps off plain HTTP.
    cookies: dict[str, str] = {}

    def call(path: str, data: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), "Referer": f"{base}{path}"}
        request = urllib.request.Request(f"{base}{path}", data=data, headers=headers)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            response = opener.open(request, timeout=60)
        except urllib.error.HTTPError as error:
            response = error
        for header in response.headers.get_all("Set-Cookie") or []:
            for morsel in http.cookies.SimpleCookie(header).values():
                cookies[morsel.key] = morsel.value
        return response.status, response.read()

    call("/admin/login/")
    form = urllib.parse.urlencode(
        {"username": "bench-root@example.com", "password": password, "csrfmiddlewaretoken": cookies["csrftoken"]}
    ).encode()
    status, _ = call("/admin/login/", form)
    assert status == 302 and "sessionid" in cookies, f"the bench superuser could not log in ({status})"

    def timed() -> float:
        started = time.perf_counter()
        status, body = call("/admin/")
        assert status == 200 and b'id="activity-dashboard"' in body, status
        return (time.perf_counter() - started) * 1000

    def uncached() -> float:
        # As every LIVE_SECONDS (config.db.daily): today read live again (the database cache).
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM django_cache WHERE cache_key LIKE '%%daily-live%%'")
        return timed()

    first = timed()
    cold = sorted(uncached() for _ in range(requests))
    warm = sorted(timed() for _ in range(requests))
    return {
        "messages": counts[0],
        "audit_rows": counts[1],
        "first_ms": first,
        "uncached_p50_ms": statistics.median(cold),
        "uncached_p95_ms": cold[int(len(cold) * 0.95) - 1],
        "cached_p50_ms": statistics.median(warm),
        "cached_p95_ms": warm[int(len(warm) * 0.95) - 1],
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def admin_index_table(figures: dict[str, float]) -> str:
    return "\n".join(
        [
            "### Admin index (activity dashboard), one request at a time",
            "",
            "| messages | audit rows | first (rolls up 29 days) ms | today read live: p50 / p95 ms "
            "| within 30 s (cached): p50 / p95 ms |",
            "|---:|---:|---:|---:|---:|",
            f"| {figures['messages']:,} | {figures['audit_rows']:,} | {figures['first_ms']:.0f} | "
            f"{figures['uncached_p50_ms']:.1f} / {figures['uncached_p95_ms']:.1f} | "
            f"{figures['cached_p50_ms']:.1f} / {figures['cached_p95_ms']:.1f} |",
        ]
    )


# --- reporting --------------------------------------------------------------------------------


def median_result(runs: list[Result]) -> Result:
    """One scenario's rounds as one row: the median of each figure (req/s, ratio, p50, p99), the
    ratio's lowest and highest, errors and requests summed, the most connections seen."""
    first = runs[0]
    ratios = [r.ratio for r in runs if r.ratio is not None]
    to_hello = [v for r in runs if isinstance(v := r.extra.get("ratio_to_project_hello"), float)]
    return Result(
        first.name,
        first.connections,
        statistics.median([r.rps for r in runs]),
        statistics.median([r.p50_ms for r in runs]),
        statistics.median([r.p99_ms for r in runs]),
        sum(r.errors for r in runs),
        sum(r.requests for r in runs),
        ratio=statistics.median(ratios) if ratios else None,
        extra={
            "max_db_connections": max(int(r.extra.get("max_db_connections", 0)) for r in runs),  # type: ignore[call-overload]
            "distinct_backends": max(int(r.extra.get("distinct_backends", 0)) for r in runs),  # type: ignore[call-overload]
            "ratio_to_project_hello": statistics.median(to_hello) if to_hello else None,
            "ratio_range": (min(ratios), max(ratios)) if ratios else None,
            "rounds": [{"rps": r.rps, "ratio": r.ratio, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms} for r in runs],
        },
    )


def table(results: list[Result], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| scenario | conns | req/s | ratio to bare hello | lowest-highest | ratio to project hello | p50 ms | p99 ms "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        spread = r.extra.get("ratio_range")
        span = f"{spread[0]:.2f}-{spread[1]:.2f}" if isinstance(spread, tuple) else "-"
        to_hello = r.extra.get("ratio_to_project_hello")
        hello = f"{to_hello:.2f}" if isinstance(to_hello, float) else "-"
        lines.append(
            f"| {r.name} | {r.connections} | {r.rps:,.0f} | {ratio} | {span} | {hello} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.errors} |"
        )
    return "\n".join(lines)


def growth_table(series: dict[str, list[tuple[str, Result]]]) -> str:
    lines = [
        "### Cost growth (p50 latency; flat = largest within 1.3x of smallest)",
        "",
        "| series | point | p50 ms | p99 ms | req/s | largest/smallest p50 | flat |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, points in series.items():
        p50s = [r.p50_ms for _, r in points]
        spread = max(p50s) / min(p50s)
        for i, (label, r) in enumerate(points):
            tail = f"{spread:.2f} | {'yes' if spread <= 1.3 else 'NO'}" if i == 0 else " | "
            lines.append(
                f"| {name if i == 0 else ''} | {label} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.rps:,.0f} | {tail} |"
            )
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def redis_url() -> str | None:
    """A scratch database on the local Redis for the free tier's counted run, if one answers."""
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    host, _, port = url.split("//", 1)[1].split("/", 1)[0].partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=1):
            return url
    except OSError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "5")), help="seconds per load run"
    )
    parser.add_argument("--growth-duration", type=int, default=int(os.environ.get("BENCH_GROWTH_DURATION", "5")))
    parser.add_argument(
        "--workers", type=int, default=None, help="WEB_CONCURRENCY (default: config/gunicorn.conf.py's default)"
    )
    parser.add_argument("--worker-class", default=None, help="GUNICORN_WORKER_CLASS: sync or gthread")
    parser.add_argument("--threads", type=int, default=None, help="GUNICORN_THREADS (gthread)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=int(os.environ.get("BENCH_ROUNDS", "3")),
        help="times each load run is repeated, the scenarios in turn, each round with its own floor; the median is reported",
    )
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--spread-sessions", type=int, default=200)
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated scenario names to run")
    parser.add_argument("--no-replica", action="store_true", help="skip the read-replica run (bench/replica.py)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (Debian's package)", file=sys.stderr)
        return 2

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    database_url = resolve_database("agent_platform_bench")
    port = free_port()
    env = service_env(database_url, port, args.workers, args.worker_class, args.threads)
    print(f"benchmark database: {database_url}\nmigrating ...", flush=True)
    manage(env, "migrate", "--noinput", "-v", "0")
    print("seeding ...", flush=True)
    data = seed(database_url, args.spread_sessions)
    ids_file = RESULTS / "spread-ids.txt"
    ids_file.write_text("\n".join(data["spread"]) + "\n")
    hot_file = RESULTS / "hot-id.txt"
    hot_file.write_text(data["hot"] + "\n")

    # Identity-provider token against API key (issue 15): a real OpenID provider on loopback (the
    # tests' oidc-provider-mock) as the generic issuer; its tokens count at the enterprise tier,
    # as the seeded key does, so neither pays a rate counter.
    from tests.oidc_provider import OIDC_CLIENT_ID, MockProvider, provider_env

    token_provider = MockProvider().start()
    env.update(provider_env(generic=token_provider), OIDC_RATE_LIMIT_TIER="enterprise")
    token = token_provider.id_token("bench", {"email": "bench-token@example.com"}, client_id=OIDC_CLIENT_ID)

    # Three servers, one gunicorn config: the floor (bench/bare: Django, no middleware, no
    # database, none of our code), the service, and the service counting rates in Redis.
    bare_port, redis_port = free_port(), free_port()
    bare = Server(
        bare_env(env, bare_port), bare_port, RESULTS / f"gunicorn-bare-{stamp}.log", "bench.bare.wsgi", "/_bench/hello"
    )
    server = Server(env, port, RESULTS / f"gunicorn-{stamp}.log")
    redis = redis_url()
    redis_server = (
        Server(
            {**env, "PORT": str(redis_port), "REDIS_URL": redis}, redis_port, RESULTS / f"gunicorn-redis-{stamp}.log"
        )
        if redis
        else None
    )
    if redis is None:
        print("no Redis at BENCH_REDIS_URL (redis://127.0.0.1:6379/13): the free tier runs on the database cache only")
    base = f"http://127.0.0.1:{port}"
    key, admin_key, free_key = data["key"], data["admin_key"], data["free_key"]
    me_path, detail_path = "/api/v1/users/me/", f"/api/v1/sessions/{data['paged']}/"
    scenarios = [
        ("bare Django hello (floor)", f"http://127.0.0.1:{bare_port}/_bench/hello", None, None, {}),
        ("project hello", f"{base}/_bench/hello", None, None, {}),
        ("/health/live", f"{base}/health/live", None, None, {}),
        ("/health", f"{base}/health", None, None, {}),
        ("GET users/me/ (API key)", f"{base}{me_path}", key, None, {}),
        ("GET users/me/ (free key: database cache)", f"{base}{me_path}", free_key, None, {}),
        *(
            [("GET users/me/ (free key: Redis)", f"http://127.0.0.1:{redis_port}{me_path}", free_key, None, {})]
            if redis_server
            else []
        ),
        ("GET users/me/ (token)", f"{base}{me_path}", token, None, {}),
        ("GET sessions/{id}/", f"{base}{detail_path}", key, None, {}),
        ("GET sessions/{id}/ (free key: database cache)", f"{base}{detail_path}", free_key, None, {}),
        *(
            [
                (
                    "GET sessions/{id}/ (free key: Redis)",
                    f"http://127.0.0.1:{redis_port}{detail_path}",
                    free_key,
                    None,
                    {},
                )
            ]
            if redis_server
            else []
        ),
        ("GET sessions/?page_size=20", f"{base}/api/v1/sessions/?page_size=20", key, None, {}),
        ("GET messages/?page_size=50", f"{base}/api/v1/sessions/{data['paged']}/messages/?page_size=50", key, None, {}),
        ("POST messages (spread)", base, key, WRK_POST, {"BENCH_SESSION_IDS": str(ids_file), "BENCH_KEY": key}),
        ("POST messages (hot session)", base, key, WRK_POST, {"BENCH_SESSION_IDS": str(hot_file), "BENCH_KEY": key}),
        ("GET api-keys/", f"{base}/api/v1/api-keys/", key, None, {}),
    ]
    floors = ("bare Django hello (floor)", "project hello")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    results: list[Result] = []
    connection_report = {}
    try:
        for name, url, k, script, extra_env in scenarios:  # warm pools, key reuse, token keys
            if not script:
                wrk(name, url, connections=16, duration=1, key=k, script=script, env=extra_env)
        for conns in [int(c) for c in args.connections.split(",")]:
            # The scenarios in turn, --rounds times, each round's ratios to that round's floor: the
            # machine's speed drifts by 10% and more within minutes, and a scenario measured once
            # took whatever the machine gave it then (bench/README.md, "Sixth round").
            rounds: dict[str, list[Result]] = {}
            for round_number in range(1, args.rounds + 1):
                floor: dict[str, float] = {}
                for name, url, k, script, extra_env in scenarios:
                    if only and name not in only and name not in floors:
                        continue
                    with ConnectionSampler(database_url) as sampler:
                        result = wrk(
                            name, url, connections=conns, duration=args.duration, key=k, script=script, env=extra_env
                        )
                    result.extra = {"max_db_connections": sampler.max_open, "distinct_backends": len(sampler.pids)}
                    if name in floors:
                        floor[name] = result.rps
                    result.ratio = result.rps / floor[floors[0]]
                    result.extra["ratio_to_project_hello"] = (
                        result.rps / floor[floors[1]] if floors[1] in floor else None
                    )
                    rounds.setdefault(name, []).append(result)
                    print(
                        f"  [{round_number}/{args.rounds}] {name:40s} c={conns:<3d} {result.rps:9.0f} req/s  "
                        f"ratio {result.ratio:.2f}  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                        f"errors {result.errors}  db conns max {sampler.max_open} distinct {len(sampler.pids)}",
                        flush=True,
                    )
            for name, runs in rounds.items():
                result = median_result(runs)
                results.append(result)
                connection_report[f"{name} @{conns}"] = result.extra

        series: dict[str, list[tuple[str, Result]]] = {}
        if not args.skip_growth:
            d, c = args.growth_duration, 4

            def in_turn(points: list[tuple[str, Callable[[], Result]]]) -> list[tuple[str, Result]]:
                """Each point's run, the points in turn, --rounds times; the median of each."""
                runs: dict[str, list[Result]] = {label: [] for label, _ in points}
                for _ in range(args.rounds):
                    for label, run in points:
                        runs[label].append(run())
                return [(label, median_result(results)) for label, results in runs.items()]

            def appends(size: int) -> Callable[[], Result]:
                sid_file = RESULTS / f"growth-{size}.txt"
                sid_file.write_text(growth[size] + "\n")
                env = {"BENCH_SESSION_IDS": str(sid_file), "BENCH_KEY": key}
                return lambda: wrk(f"append@{size}", base, connections=c, duration=d, script=WRK_POST, env=env)

            def gets(name: str, url: str, k: str) -> Callable[[], Result]:
                return lambda: wrk(name, url, connections=c, duration=d, key=k)

            print("cost growth ...", flush=True)
            growth = data["growth"]
            series["append (session already holding N messages)"] = in_turn(
                [(f"{size:,} messages", appends(size)) for size in (10, 1000, 100_000)]
            )
            deep = base64.b64encode(b"p=99950").decode()
            page = f"{base}/api/v1/sessions/{growth[100_000]}/messages/?page_size=50"
            series["message page of 50"] = in_turn(
                [
                    ("first page", gets("page@start", page, key)),
                    ("100,000 deep", gets("page@deep", f"{page}&cursor={deep}", key)),
                ]
            )
            me = f"{base}/api/v1/users/me/"
            # The tables only grow: each size is measured in rounds of its own.
            small_keys = fill_keys(database_url, 0)
            series["key authentication (GET users/me/)"] = in_turn(
                [(f"{small_keys:,} keys", gets("auth@small", me, key))]
            )
            many = fill_keys(database_url, 1_000_000)
            series["key authentication (GET users/me/)"] += in_turn([(f"{many:,} keys", gets("auth@large", me, key))])
            audit_url = f"{base}/api/v1/audit-logs/?page_size=50"
            rows = fill_audit(database_url, 10_000)
            series["audit-log page (admin)"] = in_turn([(f"{rows:,} rows", gets("audit@10k", audit_url, admin_key))])
            rows = fill_audit(database_url, 1_000_000)
            series["audit-log page (admin)"] += in_turn([(f"{rows:,} rows", gets("audit@1m", audit_url, admin_key))])
            for name, points in series.items():
                p50s = [r.p50_ms for _, r in points]
                print(
                    f"  {name}: "
                    + ", ".join(f"{label} p50 {r.p50_ms:.2f} ms" for label, r in points)
                    + f"  (largest/smallest {max(p50s) / min(p50s):.2f})",
                    flush=True,
                )
        dashboard = None
        if not only or "admin index" in only:
            print("admin index at 1,000,000 messages and audit rows ...", flush=True)
            dashboard = admin_index(base, database_url)
            print("  admin index: " + ", ".join(f"{k} {v:,.1f}" for k, v in dashboard.items()), flush=True)
    finally:
        for running in (bare, server, redis_server):
            if running is not None:
                running.stop()
        token_provider.stop()

    max_size = int(env.get("DB_POOL_SIZE", "5")) + int(env.get("DB_MAX_OVERFLOW", "10"))
    served = gunicorn_settings(env)
    worst = max((v["max_db_connections"] for v in connection_report.values()), default=0)
    distinct = max((v["distinct_backends"] for v in connection_report.values()), default=0)
    header = (
        f"## Benchmark {stamp}\n\n"
        f"gunicorn {served['workers']} {served['worker_class']} workers x {served['threads']} threads "
        f"(the same for the bare floor), DB_POOL_MODE={env['DB_POOL_MODE']}, pool max {max_size} per worker "
        f"(limit {served['workers'] * max_size}); {os.cpu_count()} cores shared by wrk, gunicorn and PostgreSQL; "
        f"{args.duration}s per run, {args.rounds} rounds (each figure the median of its rounds; each ratio to its "
        f"round's floor).\n\n"
        f"Database connections during load: at most {worst} open at once, {distinct} distinct backends in one run "
        f"(never one per request).\n"
    )
    report = "\n\n".join(
        [header, table(results, "Load (ratio = req/s / the bare Django hello at the same connections)")]
        + ([growth_table(series)] if series else [])
        + ([admin_index_table(dashboard)] if dashboard else [])
    )
    out = RESULTS / f"bench-{stamp}.md"
    out.write_text(report + "\n")
    (RESULTS / f"bench-{stamp}.json").write_text(
        json.dumps(
            {
                "results": [r.__dict__ for r in results],
                "growth": {k: [(label, r.__dict__) for label, r in v] for k, v in series.items()},
            },
            indent=2,
            default=str,
        )
    )
    print("\n" + report + f"\n\nwritten to {out}")
    if not args.no_replica:
        from bench import replica

        workers = ["--workers", str(args.workers)] if args.workers else []
        return replica.main(["--duration", str(args.duration), *workers])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
