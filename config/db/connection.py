"""How the service talks to PostgreSQL: the DATABASES entry for each pool mode, and pool figures.

The original service tuned SQLAlchemy's QueuePool with DB_POOL_SIZE / DB_MAX_OVERFLOW /
DB_POOL_TIMEOUT / DB_POOL_RECYCLE and `pool_pre_ping`. Django offers four ways to hold
connections, selected by DB_POOL_MODE:

* ``pool`` (default): Django's native psycopg pool, one per worker process.
  ``min_size = DB_POOL_SIZE``, ``max_size = DB_POOL_SIZE + DB_MAX_OVERFLOW``; health checks on.
* ``persistent``: one connection per thread kept for ``DB_CONN_MAX_AGE`` seconds.
* ``pgbouncer``: behind PgBouncer in transaction mode: no server-side cursors, no prepared
  statements, no session state set at connect time.
* ``none``: a new connection per request (only for comparison).

Every mode uses the backend ``config.db.backend``: Django's PostgreSQL backend that rides out
database outages (config.db.outage): while the database is unreachable a request waits at most
DB_OUTAGE_TIMEOUT, then answers 503, and the service recovers as soon as the database answers.
Connections also carry ``tcp_user_timeout`` = DB_OUTAGE_TIMEOUT (a query sent to a host that
drops packets fails then, not after the kernel's fifteen minutes) and TCP keepalives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from config.db.outage import existing_gate

POOL_MODES = ("pool", "persistent", "pgbouncer", "none")


@dataclass(frozen=True)
class PoolSettings:
    mode: str = "pool"
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: int = 3600
    conn_max_age: int | None = None
    connect_timeout: int = 5
    statement_timeout: float = 30.0
    outage_timeout: float = 1.5
    echo_sql: bool = False
    prepared_statements: bool = True

    def __post_init__(self) -> None:
        if self.mode not in POOL_MODES:
            raise ImproperlyConfigured(f"DB_POOL_MODE={self.mode!r} is not one of: {', '.join(POOL_MODES)}")
        if self.pool_size < 1:
            raise ImproperlyConfigured(f"DB_POOL_SIZE must be at least 1 (got {self.pool_size})")
        if self.max_overflow < 0:
            raise ImproperlyConfigured(
                f"DB_MAX_OVERFLOW must not be negative (got {self.max_overflow}): "
                "the pool's max size would fall below its min size"
            )
        if self.pool_timeout <= 0:
            raise ImproperlyConfigured(f"DB_POOL_TIMEOUT must be positive (got {self.pool_timeout})")
        if self.pool_recycle < 1:
            raise ImproperlyConfigured(f"DB_POOL_RECYCLE must be positive (got {self.pool_recycle})")
        if self.conn_max_age is not None and self.conn_max_age < 0:
            raise ImproperlyConfigured(f"DB_CONN_MAX_AGE must not be negative (got {self.conn_max_age})")
        if self.connect_timeout < 1:
            raise ImproperlyConfigured(f"DB_CONNECT_TIMEOUT must be at least 1 (got {self.connect_timeout})")
        if self.statement_timeout < 0:
            raise ImproperlyConfigured(f"DB_STATEMENT_TIMEOUT must not be negative (got {self.statement_timeout})")
        if self.outage_timeout < 0.1:
            raise ImproperlyConfigured(f"DB_OUTAGE_TIMEOUT must be at least 0.1 (got {self.outage_timeout})")

    @property
    def max_size(self) -> int:
        return self.pool_size + self.max_overflow

    @property
    def outage_wait(self) -> float:
        """How long a request waits on an unreachable database: DB_OUTAGE_TIMEOUT, and never longer
        than it would wait for a busy pool."""
        return min(self.outage_timeout, self.pool_timeout) if self.mode == "pool" else self.outage_timeout

    @property
    def prepares_statements(self) -> bool:
        """Whether the hand-written statements are prepared on the server: only where a connection
        is PostgreSQL's own and outlives the request (pool, persistent), not behind PgBouncer."""
        return self.prepared_statements and self.mode in ("pool", "persistent")

    @property
    def statement_timeout_ms(self) -> int:
        return int(self.statement_timeout * 1000)


def parse_database_url(url: str) -> dict[str, Any]:
    """Turn a DATABASE_URL into Django's connection fields (postgres:// or postgresql://)."""
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        raise ImproperlyConfigured("DATABASE_URL must be a postgresql:// URL (this service only runs on PostgreSQL)")
    try:
        config = environ.Env.db_url_config(url)
    except Exception as exc:  # environ raises assorted errors on garbage
        raise ImproperlyConfigured(f"DATABASE_URL could not be parsed: {exc}") from exc
    options = dict(config.get("OPTIONS") or {})
    # A unix socket directory may come as ?host=/path; Django wants it in HOST.
    if not config.get("HOST") and "host" in options:
        config["HOST"] = options.pop("host")
    config["OPTIONS"] = options
    return config


def build_database(url: str, pool: PoolSettings) -> dict[str, Any]:
    """The DATABASES['default'] entry for a DATABASE_URL and a pool configuration."""
    db = parse_database_url(url)
    db["ENGINE"] = "config.db.backend"
    options: dict[str, Any] = dict(db["OPTIONS"])
    options.setdefault("connect_timeout", pool.connect_timeout)
    # Data sent and not acknowledged for this long (a host or network that drops packets) ends
    # the connection; keepalives find dead idle ones. Unix sockets ignore both.
    options.setdefault("tcp_user_timeout", int(pool.outage_timeout * 1000))
    options.setdefault("keepalives", 1)
    options.setdefault("keepalives_idle", 30)
    options.setdefault("keepalives_interval", 10)
    options.setdefault("keepalives_count", 3)
    db["CONN_HEALTH_CHECKS"] = True
    db["DISABLE_SERVER_SIDE_CURSORS"] = False
    db["ATOMIC_REQUESTS"] = False
    # Read by config.db.backend's statement_cursor (Django ignores keys it does not know).
    db["PREPARE_STATEMENTS"] = pool.prepares_statements
    if pool.prepares_statements:
        # psycopg prepares nothing while this is None (Django's default); with a number, only
        # what asks to be prepared is (statement_cursor's cursor; Django's client-side cursors
        # never prepare), so no statement is prepared behind the code's back.
        options.setdefault("prepare_threshold", 2**31 - 1)

    if pool.mode != "pgbouncer" and pool.statement_timeout_ms:
        # Direct connections get the timeout as a startup parameter: no extra round trip.
        # PgBouncer rejects startup `options`, so that mode relies on the role default that
        # `migrate` writes (config.db.migrate.after_migrate).
        existing = options.get("options", "")
        options["options"] = f"{existing} -c statement_timeout={pool.statement_timeout_ms}".strip()

    if pool.mode == "pool":
        options["pool"] = {
            "min_size": pool.pool_size,
            "max_size": pool.max_size,
            "timeout": pool.pool_timeout,
            "max_lifetime": float(pool.pool_recycle),
            "name": "default",
            # One background thread per connection the pool may open: a reconnection that hangs
            # on a host dropping packets never holds up the others.
            "num_workers": pool.max_size,
        }
        # Django refuses CONN_MAX_AGE together with its pool.
        db["CONN_MAX_AGE"] = 0
    elif pool.mode == "persistent":
        db["CONN_MAX_AGE"] = pool.conn_max_age if pool.conn_max_age is not None else pool.pool_recycle
    elif pool.mode == "pgbouncer":
        # Transaction pooling hands each transaction a different server connection:
        # named cursors and prepared statements would outlive the transaction that made them.
        db["DISABLE_SERVER_SIDE_CURSORS"] = True
        options["prepare_threshold"] = None
        db["CONN_MAX_AGE"] = pool.conn_max_age if pool.conn_max_age is not None else 0
    else:  # none
        db["CONN_MAX_AGE"] = 0
        db["CONN_HEALTH_CHECKS"] = False

    db["OPTIONS"] = options
    return db


def pool_figures(alias: str = "default") -> dict[str, Any]:
    """Pool figures for /health and verify_database, in the seed's vocabulary.

    In ``pool`` mode they come from psycopg_pool's own counters. ``overflow`` is the number of
    connections open beyond ``pool_size`` (never negative, unlike the original's QueuePool
    figure); ``total`` is the number of connections actually open.
    """
    from django.conf import settings
    from django.db import connections

    conf: PoolSettings = settings.DB_POOL
    figures: dict[str, Any] = {
        "mode": conf.mode,
        "pool_size": conf.pool_size,
        "max_overflow": conf.max_overflow,
        "pool_timeout": conf.pool_timeout,
        "pool_recycle": conf.pool_recycle,
    }
    connection = connections[alias]
    pool = getattr(connection, "pool", None)
    if conf.mode == "pool" and pool is not None:
        stats = pool.get_stats()
        total = int(stats.get("pool_size", 0))
        idle = int(stats.get("pool_available", 0))
        figures.update(
            {
                "checked_in": idle,
                "checked_out": total - idle,
                "overflow": max(0, total - conf.pool_size),
                "total": total,
                "max_size": conf.max_size,
                # Requests inside getconn() now (psycopg's own figure counts each wait slice).
                "requests_waiting": int(getattr(pool, "waiting_requests", stats.get("requests_waiting", 0))),
                "connections_opened": int(stats.get("connections_num", 0)),
                "connections_lost": int(stats.get("connections_lost", 0)),
            }
        )
    else:
        # One connection per thread: this worker's is either open (in use by this request)
        # or not open at all.
        is_open = connection.connection is not None
        figures.update(
            {
                "checked_in": 0,
                "checked_out": int(is_open),
                "overflow": 0,
                "total": int(is_open),
                "conn_max_age": connection.settings_dict.get("CONN_MAX_AGE"),
            }
        )
    gate = existing_gate(alias)
    figures["reachable"] = True if gate is None else gate.figures()["reachable"]
    if gate is not None:
        figures.update({name: value for name, value in gate.figures().items() if name != "reachable"})
    return figures
