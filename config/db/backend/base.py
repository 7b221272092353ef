"""Django's PostgreSQL backend, riding out database outages (config.db.outage).

The same backend as ``django.db.backends.postgresql``; what changes is how connections are
had and lost:

* pool mode: the pool is ``config.db.pool.ResilientPool`` (fast drain of stale connections,
  bounded waits while the database is unreachable, recovery as soon as it answers); a thread
  that serves one request at a time keeps its checkout across requests for up to
  ``HOLD_SECONDS`` (``config.db.pool.holds_checkout``), checked at each request's first query as
  a checkout would be;
* the other modes (persistent, pgbouncer, none): a new connection is made in a helper thread and
  waited for at most DB_OUTAGE_TIMEOUT, and not tried at all while the gate is closed and stays
  closed for that long; the health check of a kept connection is skipped while the gate is
  closed (a ping into a host that drops packets would hang until tcp_user_timeout);
* every mode: a query whose connection breaks closes the gate, so the next request waits for
  the database (briefly) instead of failing on a dead connection.

And two things change in how statements run: ``timestamptz`` is parsed in C
(config.db.backend.timestamps), where Django's loader used psycopg's Python parser, and the
hand-written statements are prepared on the server where that is safe (``statement_cursor``).
"""

from __future__ import annotations

from time import monotonic
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper
from django.db.backends.postgresql import base as postgresql
from django.db.backends.postgresql import operations as postgresql_operations
from django.db.backends.postgresql.psycopg_any import register_tzloader  # type: ignore[import-untyped]
from django.db.utils import DatabaseErrorWrapper
from django.utils.asyncio import async_unsafe
from django.utils.functional import cached_property
from psycopg.pq import Format, TransactionStatus

from config.db.backend.timestamps import TIMESTAMPTZ_OID, with_fast_timestamps
from config.db.outage import ConnectTimeout, DatabaseGate, connect_within, gate_for
from config.db.pool import HOLD_SECONDS, ResilientPool, holds_checkout, quick_check
from config.observability import metrics


class OutageAwareErrorWrapper(DatabaseErrorWrapper):
    """Django's error translation, telling the gate when an error left the connection broken."""

    wrapper: DatabaseWrapper

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if exc_type is not None and issubclass(exc_type, psycopg.errors.QueryCanceled):
            metrics.db_statement_timeouts.inc()
        if exc_type is not None and issubclass(exc_type, (psycopg.OperationalError, psycopg.InterfaceError)):
            # Only a connection that broke says anything: a failed connect is counted where it
            # is made, and a pool timeout may mean a busy pool, not an unreachable database.
            connection = self.wrapper.connection
            if connection is not None and (connection.broken or connection.closed):
                self.wrapper.outage_gate.record_failure(exc_value)
        super().__exit__(exc_type, exc_value, traceback)


class PreparingCursor(postgresql.CursorMixin, psycopg.Cursor[Any]):  # type: ignore[name-defined]  # Django's callproc
    """Binds parameters on the server and prepares each statement the first time a connection
    runs it: later executions skip PostgreSQL's parsing and planning (its CPU per detail GET
    0.19 -> 0.07 ms, per append 0.6 -> 0.39 ms, bench/README.md). Only for the hand-written statements (``statement_cursor``),
    whose parameters are typed the way server-side binding types them; Django's own queries keep
    its client-side binding."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> PreparingCursor:
        super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)
        return self


class DatabaseOperations(postgresql_operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str:
        """For the query log (DEBUG, DB_ECHO_SQL, CaptureQueriesContext): a prepared statement's
        text as Django's client-side cursors would have sent it, values interpolated."""
        if isinstance(cursor, PreparingCursor):
            try:
                return str(self.compose_sql(sql, params))
            except psycopg.DataError:
                return sql
        result: str = super().last_executed_query(cursor, sql, params)
        return result


class DatabaseWrapper(postgresql.DatabaseWrapper):
    ops_class = DatabaseOperations
    # Monotonic time this thread's current request first asked for a connection (the health
    # check of a kept connection, or a new connection): the outage wait counts from there.
    _acquire_started: float | None = None

    @cached_property
    def outage_gate(self) -> DatabaseGate:
        params = self.get_connection_params()
        return gate_for(self.alias, timeout=settings.DB_POOL.outage_wait, conn_params=params)

    @cached_property
    def wrap_database_errors(self) -> DatabaseErrorWrapper:
        return OutageAwareErrorWrapper(self)

    @property
    def pool(self) -> ResilientPool | None:
        """Django's pool, built as Django builds it, from the resilient subclass."""
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None
        pools: dict[str, ResilientPool] = self._connection_pools  # type: ignore[attr-defined]
        if self.alias not in pools:
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # Django sets the real mode later
            pool = ResilientPool(
                kwargs=connect_kwargs,
                open=False,  # opened on first use, in the worker process
                configure=self._configure_connection,  # type: ignore[attr-defined]  # Django's own
                check=quick_check if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
                gate=self.outage_gate,
                **(pool_options if isinstance(pool_options, dict) else {}),
            )
            pools.setdefault(self.alias, pool)  # the first thread to get here wins
        return pools[self.alias]

    @async_unsafe
    def statement_cursor(self) -> Any:
        """A cursor for a hand-written statement (an app's ``queries.py``, ``raw_select``): one
        that prepares it (``PreparingCursor``) where connections outlive a request and are
        PostgreSQL's own (``PREPARE_STATEMENTS``: pool and persistent modes), Django's cursor
        otherwise (behind PgBouncer a prepared statement would outlive the transaction that made
        it; with a connection per request it is never reused). The same wrapping either way:
        Django's error translation, execute wrappers and query log."""
        if not self.settings_dict.get("PREPARE_STATEMENTS"):
            return self.cursor()
        self.close_if_health_check_failed()
        self.ensure_connection()
        if self.connection.cursor_factory is not postgresql.Cursor:  # type: ignore[attr-defined]
            # Another cursor class was put in (OpenTelemetry's psycopg instrumentation traces
            # through its own): the statement goes through it, unprepared, rather than untraced.
            return self.cursor()
        with self.wrap_database_errors:
            cursor = PreparingCursor(self.connection)
            # What Django's create_cursor does: its zone, if the connection's loader has another.
            loader = self.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
            if self.timezone != getattr(loader, "timezone", None):
                register_tzloader(self.timezone, cursor)
            return self._prepare_cursor(cursor)  # type: ignore[attr-defined]  # Django's, untyped

    def connect(self) -> None:
        super().connect()
        if self.pool is not None and holds_checkout():
            # Django hands a pool connection back at the end of the request that took it
            # (CONN_MAX_AGE 0); this one stays until the first request end past close_at. Each
            # request's first query still checks it (CONN_HEALTH_CHECKS: quick_check, as the
            # pool's checkout does), and a broken one is handed back and replaced from the pool.
            self.close_at = monotonic() + HOLD_SECONDS

    def close_if_unusable_or_obsolete(self) -> None:
        connection = self.connection
        if (
            connection is not None
            and self.pool is not None
            and connection.info.transaction_status != TransactionStatus.IDLE
        ):
            # Nothing a request left open (a transaction begun by hand, a failed one) is carried
            # into the next request on a held checkout: the pool resets it on its way back.
            self.close()
            return
        super().close_if_unusable_or_obsolete()

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        if "context" in params:  # Django's adapters, with timestamps parsed in C
            params["context"] = with_fast_timestamps(params["context"])
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.pool is not None:
            return super().get_new_connection(conn_params)
        gate = self.outage_gate
        started = self._acquire_started or monotonic()
        self._acquire_started = None
        if gate.is_down and not gate.wait_until_open(gate.wait_deadline(started)):
            raise psycopg.OperationalError(gate.unreachable_message())
        try:
            connection = connect_within(
                lambda: super(DatabaseWrapper, self).get_new_connection(conn_params),
                started + gate.timeout - monotonic(),
            )
        except (psycopg.OperationalError, ConnectTimeout) as exc:
            metrics.db_connection_errors.inc()
            gate.record_failure(exc)
            raise
        gate.record_success()
        return connection

    def close_if_health_check_failed(self) -> None:
        checking = (
            self.connection is not None
            and self.health_check_enabled  # type: ignore[attr-defined]  # set by BaseDatabaseWrapper.connect()
            and not self.health_check_done  # type: ignore[attr-defined]
        )
        if checking:
            self._acquire_started = monotonic()
        # Django's own check, for pool connections too: Django's PostgreSQL backend skips it
        # there ("the pool only returns healthy connections"), but a checkout held across
        # requests did not come from the pool this request. A fresh checkout is marked checked
        # when it is made (BaseDatabaseWrapper.connect), so it is not checked twice.
        BaseDatabaseWrapper.close_if_health_check_failed(self)
        if checking and self.connection is not None:
            self._acquire_started = None  # the kept connection passed: nothing to wait for

    def is_usable(self) -> bool:
        if self.connection is None:
            return False
        gate = self.outage_gate
        if gate.is_down:
            return False
        try:
            quick_check(self.connection)
            usable = True
        except psycopg.Error:
            usable = False
        if not usable:
            gate.record_failure("a kept connection failed its health check")
        return usable
