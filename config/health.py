"""Health probes, in the seed's JSON shape, without authentication.

* ``/health``: the database component with its latency, real pool figures and whether this
  process can reach the database; 200 healthy, 503 unhealthy. Then one ``replica`` component per
  read replica (its state and lag), which never turns the answer unhealthy. It waits at most
  DB_OUTAGE_TIMEOUT for a connection, so a dead database is reported quickly, not after the
  pool timeout.
* ``/health/live``: the process answers; touches nothing.
* ``/health/ready``: the database answers and no migration is unapplied; else 503.
* ``/health/startup``: this process has finished starting (settings loaded, the database
  reached once, every migration applied): 503 until then, 200 from then on, without touching
  the database again (a startup probe, so the liveness probe never kills a slow start).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.db import replicas
from config.db.connection import pool_figures

VERSION = "1.0.0"
_STARTED = time.monotonic()
_migrated = False
_started = False


def _select_one() -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    pool = getattr(connection, "pool", None)  # the postgresql backend's psycopg pool, in pool mode
    if pool is not None:
        pool.open()
        # Straight from the pool with a short wait: a dead server fails fast here.
        with pool.connection(timeout=settings.DB_POOL.outage_wait) as conn:
            conn.execute("SELECT 1")
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")


def database_component() -> dict[str, Any]:
    started = time.perf_counter()
    error = None
    try:
        _select_one()
    except Exception as exc:  # any failure to reach the database means unhealthy
        error = f"Database error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    try:
        details = pool_figures()
    except Exception:  # figures are best effort when the pool itself is broken
        details = {"mode": settings.DB_POOL.mode}
    return {
        "name": "database",
        "status": "unhealthy" if error else "healthy",
        "latency_ms": latency_ms,
        "details": details,
        "error": error,
    }


def _unapplied_migrations() -> int:
    global _migrated
    if _migrated:
        return 0
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    _migrated = not plan
    return len(plan)


def _body(status: str, components: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "status": status,
        "timestamp": timezone.now().isoformat(),
        "uptime_seconds": round(time.monotonic() - _STARTED, 2),
        "version": VERSION,
        "components": components,
    }


def replica_components() -> list[dict[str, Any]]:
    """One component per read replica, as this process's monitor last found it (checked once per
    second in the background; the first call waits for the first check). A replica that is down
    or lagging is "unhealthy" here but never makes the service so: its reads go to the primary."""
    watcher = replicas.monitor()
    if watcher is None:
        return []
    watcher.wait_for_first_check(timeout=settings.DB_POOL.outage_wait + 1)
    components = []
    for figures in watcher.figures():
        usable = figures["state"] == "streaming"
        components.append(
            {
                "name": "replica",
                "status": "healthy" if usable else "unhealthy",
                "details": {**figures, "max_lag_seconds": settings.REPLICA_MAX_LAG_SECONDS},
                "error": None if usable else (figures["error"] or figures["state"]),
            }
        )
    return components


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    component = database_component()
    healthy = component["status"] == "healthy"
    body = _body("healthy" if healthy else "unhealthy", [component, *replica_components()])
    return JsonResponse(body, status=200 if healthy else 503)


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "alive", "timestamp": timezone.now().isoformat()})


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    component = database_component()
    if component["status"] == "healthy":
        try:
            pending = _unapplied_migrations()
        except DatabaseError as exc:
            pending = -1
            component["error"] = f"Migration check failed: {type(exc).__name__}"
        migrations = {
            "name": "migrations",
            "status": "healthy" if pending == 0 else "unhealthy",
            "details": {"unapplied": pending},
            "error": None if pending == 0 else (component.get("error") or f"{pending} unapplied migration(s)"),
        }
    else:
        migrations = {"name": "migrations", "status": "unknown", "details": None, "error": "database unreachable"}
    ok = component["status"] == "healthy" and migrations["status"] == "healthy"
    return JsonResponse(_body("ready" if ok else "not_ready", [component, migrations]), status=200 if ok else 503)


@never_cache
@require_GET
def startup(request: HttpRequest) -> JsonResponse:
    global _started
    if _started:
        body = _body("started", [])
        body["checks"] = {"settings": "loaded", "database": "reached", "unapplied_migrations": 0}
        return JsonResponse(body)
    component = database_component()
    pending: int | None = None
    if component["status"] == "healthy":
        try:
            pending = _unapplied_migrations()
        except DatabaseError:
            pending = None
    _started = pending == 0
    checks = {"settings": "loaded", "database": component["status"], "unapplied_migrations": pending}
    body = _body("started" if _started else "starting", [component])
    body["checks"] = checks
    return JsonResponse(body, status=200 if _started else 503)
