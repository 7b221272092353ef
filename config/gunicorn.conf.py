"""Gunicorn settings: `gunicorn -c config/gunicorn.conf.py config.wsgi`.

Sync workers, `cores + 1` unless WEB_CONCURRENCY says otherwise (GUNICORN_WORKER_CLASS and
GUNICORN_THREADS choose another class; bench/README.md has the measurement behind the default:
on 2 cores, 2, 3 and 5 sync workers served the same within 4%, and gthread workers with
keep-alive no more, with three times the p99). Each worker opens its own
psycopg pool lazily, on its first query, after the fork: a pool made in the master would hand
the same sockets to every worker. `pre_fork` refuses to fork if one exists; `worker_exit`
closes the worker's pool so connections end cleanly on shutdown.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# A sync worker per core keeps the cores busy (PostgreSQL and the network wait take the rest);
# one more absorbs a slow request. More only adds memory and database connections.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10 if max_requests else 0
accesslog = None  # the app logs every request itself (method, path, status, duration, request id)
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Import Django once in the master so workers fork fast; no database is touched on import.
preload_app = os.environ.get("GUNICORN_PRELOAD", "true").lower() in {"1", "true", "yes", "on"}
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def _pools() -> dict[str, Any]:
    try:
        from django.db.backends.postgresql.base import DatabaseWrapper
    except Exception:  # Django not importable yet: nothing to check
        return {}
    pools: dict[str, Any] = getattr(DatabaseWrapper, "_connection_pools", {})  # Django's per-process pools
    return pools


def pre_fork(server: Any, worker: Any) -> None:
    if _pools():
        raise RuntimeError(
            "a database pool exists in the gunicorn master before fork; workers would share its "
            "connections. Nothing may query the database at import time."
        )


def post_fork(server: Any, worker: Any) -> None:
    from django.db import connections

    # Belt and braces: drop any connection object inherited from the master.
    for conn in connections.all(initialized_only=True):
        conn.connection = None


def worker_exit(server: Any, worker: Any) -> None:
    try:
        from django.db import connections
    except Exception:
        return
    connections.close_all()
    for alias in list(_pools()):
        try:
            connections[alias].close_pool()  # type: ignore[attr-defined]  # the postgresql backend's
        except Exception as exc:  # shutting down: report, don't raise
            server.log.warning("closing the %s pool failed: %s", alias, exc)


# --- Prometheus metrics from every worker (config/observability/gunicorn.py) --------------------
# The directory the workers' metric files share, made before the app is imported (preload).
from config.observability import gunicorn as _metrics  # noqa: E402

_metrics.prepare_directory()
on_starting = _metrics.on_starting
child_exit = _metrics.child_exit
on_exit = _metrics.on_exit
