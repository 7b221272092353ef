"""Where a request's time goes: the benchmark's scenarios run in process, timed and profiled.

    make profile                                   # every scenario, 400 requests each
    make profile PROFILE_ARGS="--only detail --requests 2000"

Seeds its own database (`agent_platform_profile` on the embedded server, or DATABASE_URL) the
way `bench/run.py` does, then calls the real WSGI application (the full middleware stack, the
pool, PostgreSQL over its socket; no test client, no HTTP) for each scenario:

1. timed: the mean wall time per request, and its ratio to the hello view measured the same way;
   this is the per-request cost a gunicorn worker pays, without the network and wrk's share
   of the CPU, so it moves much less from run to run than req/s under load;
2. profiled with pyinstrument: the call tree goes to `bench/results/profile-<scenario>.txt`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import RESULTS, manage, resolve_database, seed, service_env


def wsgi_caller(application: Callable, method: str, path: str, key: str | None, body: bytes = b"") -> Callable:
    path, _, query = path.partition("?")
    base = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if key:
        base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    if body:
        base["CONTENT_TYPE"] = "application/json"
        base["CONTENT_LENGTH"] = str(len(body))

    def call() -> int:
        status: list[str] = []
        environ = {**base, "wsgi.input": io.BytesIO(body)}
        result = application(environ, lambda s, h, exc_info=None: status.append(s))
        try:
            b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return int(status[0][:3])

    return call


def build_scenarios(application: Callable, data: dict, posts: int) -> dict[str, Callable[[], int]]:
    """The benchmark's scenarios as in-process WSGI calls; ``posts`` bounds the spread appends."""
    key = data["key"]
    message = json.dumps({"role": "user", "content": "a message of modest length", "token_count": 12}).encode()
    spread = iter(data["spread"] * max(1, posts // max(1, len(data["spread"])) + 1))

    def post_spread() -> int:
        return wsgi_caller(application, "POST", f"/api/v1/sessions/{next(spread)}/messages/", key, message)()

    scenarios = {
        "hello": wsgi_caller(application, "GET", "/_bench/hello", None),
        "health": wsgi_caller(application, "GET", "/health", None),
        "live": wsgi_caller(application, "GET", "/health/live", None),
        "me": wsgi_caller(application, "GET", "/api/v1/users/me/", key),
        "detail": wsgi_caller(application, "GET", f"/api/v1/sessions/{data['paged']}/", key),
        "list": wsgi_caller(application, "GET", "/api/v1/sessions/?page_size=20", key),
        "messages": wsgi_caller(application, "GET", f"/api/v1/sessions/{data['paged']}/messages/?page_size=50", key),
        "append-spread": post_spread,
        "append-hot": wsgi_caller(application, "POST", f"/api/v1/sessions/{data['hot']}/messages/", key, message),
        "api-keys": wsgi_caller(application, "GET", "/api/v1/api-keys/", key),
    }
    if "free_key" in data:  # the free tier: counted on every request (bench.run sets its limit out of reach)
        free = data["free_key"]
        scenarios["me-free"] = wsgi_caller(application, "GET", "/api/v1/users/me/", free)
        scenarios["detail-free"] = wsgi_caller(application, "GET", f"/api/v1/sessions/{data['paged']}/", free)
        # The same with the counter in Redis: bench/instructions.py runs these with REDIS_URL set.
        scenarios["me-free-redis"] = scenarios["me-free"]
        scenarios["detail-free-redis"] = scenarios["detail-free"]
    return scenarios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per scenario, timed and profiled")
    parser.add_argument("--only", default="", help="comma-separated scenario names (hello always runs)")
    args = parser.parse_args()

    database_url = resolve_database("agent_platform_profile")
    env = service_env(database_url, 8000, 1)
    env["ALLOWED_HOSTS"] = "127.0.0.1"
    env["LOG_LEVEL"] = "warning"  # request logs would time the terminal, not the service
    manage(env, "migrate", "--noinput", "-v", "0")
    os.environ.update(env)
    data = seed(database_url, spread_sessions=50)

    from django.db import connection
    from pyinstrument import Profiler

    from config.wsgi import application  # the production handler (config.handlers)

    scenarios = build_scenarios(application, data, args.requests * 4)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, float, int]] = []
    for name, call in scenarios.items():
        if only and name not in only and name != "hello":
            continue
        for _ in range(50):  # warm: pool filled, code paths imported, caches primed
            status = call()
        if status >= 400:
            raise SystemExit(f"{name}: status {status}")
        started = time.perf_counter()
        for _ in range(args.requests):
            call()
        per_request_ms = (time.perf_counter() - started) * 1000 / args.requests
        statements: list[str] = []

        def record(execute: Callable, sql: str, *rest: object, seen: list[str] = statements) -> object:
            seen.append(sql)
            return execute(sql, *rest)

        # Counted at the cursor: Django clears connection.queries at every request start.
        with connection.execute_wrapper(record):
            call()
        rows.append((name, per_request_ms, len(statements)))
        profiler = Profiler(interval=0.0001)
        with profiler:
            for _ in range(args.requests):
                call()
        out = RESULTS / f"profile-{name}.txt"
        listing = "\n".join(f"  {sql[:240]}" for sql in statements)
        out.write_text(
            f"{name}: {per_request_ms:.3f} ms/request, {len(statements)} statements:\n{listing}\n\n"
            + profiler.output_text(unicode=True, color=False, show_all=os.environ.get("PROFILE_ALL") == "1")
        )
    floor = rows[0][1]
    print(
        f"\n{'scenario':16s} {'ms/request':>11s} {'ratio':>7s} {'queries':>8s}   (in process, {args.requests} requests)"
    )
    for name, ms, queries in rows:
        print(f"{name:16s} {ms:11.3f} {floor / ms:7.2f} {queries:8d}")
    print(f"\ncall trees: {RESULTS}/profile-<scenario>.txt")
    connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
