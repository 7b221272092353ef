"""psycopg's connection pool, made to ride out a database outage (config.db.outage).

What psycopg_pool does on its own, and why it is not enough: a connection that fails its
checkout check is put back and the next one tried after a back-off sleep (1 s, 2 s, 4 s...);
each broken connection is replaced by a background attempt that, failing, retries after 1 s,
2 s, 4 s...; a request waits up to the pool timeout for any of it. After a one-second restart
every worker's requests sat out the whole DB_POOL_TIMEOUT.

Here:
* a failed check is evidence that every idle connection is stale (a restart closes them all):
  the idle ones are drained at once and the request waits for a fresh connection, with no sleep;
* while the database is known unreachable the request waits as the gate says (at most
  DB_OUTAGE_TIMEOUT, and not at all once the outage is older than that), not DB_POOL_TIMEOUT; a
  pool that is only busy still waits DB_POOL_TIMEOUT;
* the replacement attempts are postponed while the gate is closed (the gate's prober does the
  trying, cheaply) and all run the moment it opens: recovery follows the database within about
  the prober's interval, instead of within the last back-off step;
* connection attempts, checks and connections lost during use all tell the gate.

And a server thread that serves one request at a time (a sync gunicorn worker) keeps its
checkout from one request to the next, for up to HOLD_SECONDS, instead of handing the
connection back at every request's end and taking it out again at the next one's first query
(``holds_checkout``, read by config.db.backend).
"""

from __future__ import annotations

import logging
import select
import threading
from time import monotonic
from typing import Any

from psycopg import Connection
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff
from psycopg_pool.pool import AddConnection

from config.db.outage import DatabaseGate
from config.observability import metrics

logger = logging.getLogger(__name__)

# How long one wait for a free connection lasts before the request looks at the gate again.
WAIT_SLICE = 0.1
# How long a thread that serves one request at a time keeps a checkout across requests before it
# goes back to the pool at a request's end (where the pool's lifetime and reset rules apply).
HOLD_SECONDS = 1.0

_serving = threading.local()


def serving_one_request_at_a_time(alone: bool) -> None:
    """Told by the WSGI handler at each request: whether this thread's server runs one request at
    a time in this process (``wsgi.multithread`` false: a sync gunicorn worker) or several
    (gthread, the development server), where a held connection could keep another thread
    waiting for the pool."""
    _serving.alone = alone


def holds_checkout() -> bool:
    """Whether this thread's pool connection may stay checked out between its requests: a
    handback at every request's end and a checkout at the next one's first query cost a tenth of
    a one-query request (bench/README.md), and with one request at a time nobody else can use
    the connection meanwhile. Threads that serve no requests (background work) never hold."""
    return getattr(_serving, "alone", False)


def quick_check(conn: Connection[Any]) -> None:
    """The checkout check, without a round trip when none is needed: an idle connection whose
    socket has nothing to read is as good as the empty query would find it; one with something
    to read (a server that said goodbye on shutdown, or closed the socket) gets the real ping,
    which raises. A connection to a host that went silent fails on its first query instead,
    within tcp_user_timeout (DB_OUTAGE_TIMEOUT), and that breaks the gate like any failure.

    The pool's pre-ping (CONN_HEALTH_CHECKS, the seed's pool_pre_ping) cost a round trip and a
    statement on every checkout; this costs a poll() of one descriptor.
    """
    if conn.closed or conn.broken:
        raise conn.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


class ResilientPool(ConnectionPool[Connection[Any]]):
    def __init__(self, *args: Any, gate: DatabaseGate, **kwargs: Any) -> None:
        self.gate = gate
        self.waiting_requests = 0  # requests inside getconn() waiting for a connection
        super().__init__(*args, **kwargs)

    # --- checkout ---------------------------------------------------------------------------------

    def getconn(self, timeout: float | None = None) -> Connection[Any]:
        if timeout is None:
            timeout = self.timeout
        started = monotonic()
        deadline = started + timeout
        self._stats[self._REQUESTS_NUM] += 1
        self._check_open_getconn()
        suspect = False  # this request has seen a connection fail its check
        waited = False
        try:
            while True:
                unreachable = suspect or self.gate.is_down
                limit = min(deadline, self.gate.wait_deadline(started)) if unreachable else deadline
                now = monotonic()
                if now >= limit:
                    if unreachable:
                        raise PoolTimeout(self.gate.unreachable_message())
                    raise PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec: every connection is in use")
                if not waited:
                    waited = True
                    self.waiting_requests += 1
                try:
                    conn = self._getconn_unchecked(min(limit - now, WAIT_SLICE))
                except PoolTimeout:
                    # One slice of the wait, not a failed request.
                    self._stats[self._REQUESTS_ERRORS] -= 1
                    continue
                try:
                    self._check_connection(conn)
                except Exception as exc:
                    self._putconn(conn, from_getconn=True)
                    suspect = True
                    self._discard_idle()
                    self.gate.record_failure(exc)
                    continue
                self.gate.record_success()
                metrics.db_pool_wait.observe(monotonic() - started)
                return conn
        finally:
            if waited:
                self.waiting_requests -= 1

    def _discard_idle(self) -> None:
        """A connection failed its check: the idle ones date from the same server, drop them all
        (they are replaced as usual)."""
        if self._pool:
            logger.info("a pooled connection failed its check: discarding the %d idle ones", len(self._pool))
            self.drain()

    # --- connecting -------------------------------------------------------------------------------

    def _connect(self, timeout: float | None = None) -> Connection[Any]:
        try:
            conn = super()._connect(timeout)
        except Exception as exc:
            metrics.db_connection_errors.inc()
            self.gate.record_failure(exc)
            raise
        self.gate.record_success()
        return conn

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        # While the database is unreachable, a replacement waits for the gate to open instead of
        # trying (and backing off) on its own; it runs again, as a fresh attempt, once it opens.
        if self.gate.run_when_open(lambda: self.run_task(AddConnection(self, growing=growing))):
            return
        super()._add_connection(attempt, growing)

    def _return_connection(self, conn: Connection[Any], from_getconn: bool) -> None:
        if not from_getconn and conn.pgconn.transaction_status == TransactionStatus.UNKNOWN:
            # The connection broke during a request: the server went away, or the network did.
            self.gate.record_failure("a pooled connection broke during use")
            self._discard_idle()
        super()._return_connection(conn, from_getconn)

    def figures(self) -> dict[str, int]:
        return {"requests_waiting": self.waiting_requests}
