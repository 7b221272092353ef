"""Whether this process can reach its database, and how long a request waits when it cannot.

A one-second PostgreSQL restart must not become a thirty-second outage (each request sitting out
DB_POOL_TIMEOUT for a pool whose reconnection attempts back off to 1, 2, 4... seconds), and a
database that is gone must not hang requests: so every process keeps one ``DatabaseGate`` per
database alias.

* Evidence that the database is unreachable (a connection attempt failed, a pooled connection
  failed its check, a connection broke during a query) closes the gate. Evidence that it is
  reachable (a connection made, a check passed) opens it.
* Closing the gate starts the outage clock. For DB_OUTAGE_TIMEOUT from then on, requests wait
  for the database (a restart is over in well under a second, and they then succeed); after
  that it is an outage, not a blip, and requests answer 503 at once instead of each tying up a
  worker. No request waits more than DB_OUTAGE_TIMEOUT on its own either. A pool that is merely
  busy (every connection checked out by healthy requests) leaves the gate open, and requests
  wait DB_POOL_TIMEOUT as the seed promises.
* While the gate is closed one prober thread per process tries the database every
  PROBE_INTERVAL: a TCP connect first, bounded by PROBE_TCP_TIMEOUT (so a host that drops
  packets costs a quarter of a second per try, not DB_CONNECT_TIMEOUT), then a real connection
  and ``SELECT 1``. The moment it succeeds the gate opens and whatever was waiting on it (the
  pool's postponed reconnections, waiting requests) goes ahead, so the service is back within
  about PROBE_INTERVAL of the database accepting connections.

Plumbing: it knows psycopg and the connection parameters, nothing of the apps.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from config.observability import metrics

logger = logging.getLogger(__name__)

PROBE_INTERVAL = 0.25
PROBE_TCP_TIMEOUT = 0.25


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def tcp_check(conn_params: Mapping[str, Any], *, timeout: float = PROBE_TCP_TIMEOUT) -> None:
    """A TCP connect to the database's host and port (TCP hosts only), bounded by ``timeout``:
    a host that drops packets fails here in a quarter of a second, not in connect_timeout."""
    host = str(conn_params.get("host") or "")
    if host and not host.startswith("/") and "," not in host:
        socket.create_connection((host, int(conn_params.get("port") or 5432)), timeout=timeout).close()


def make_probe(conn_params: Mapping[str, Any]) -> Callable[[], None]:
    """A check that the database answers: TCP connect (TCP hosts only), then connect and SELECT 1.
    Raises on failure. Through PgBouncer the SELECT needs a server connection, so it checks
    PostgreSQL behind it too."""
    params = {name: value for name, value in conn_params.items() if name not in {"cursor_factory", "pool"}}

    def probe() -> None:
        tcp_check(params)
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute("SELECT 1")

    return probe


@dataclass
class DatabaseGate:
    """One database, as this process sees it: reachable (open) or not (closed)."""

    alias: str
    timeout: float  # DB_OUTAGE_TIMEOUT: the longest a request waits on an unreachable database
    probe: Callable[[], None]
    down_since: float | None = None  # monotonic time the gate closed; None while open
    last_error: str | None = None
    closed_count: int = 0  # times the gate has closed in this process
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _on_open: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _prober: threading.Thread | None = field(default=None, repr=False)

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def unreachable_message(self) -> str:
        seconds = 0.0 if self.down_since is None else time.monotonic() - self.down_since
        return f"database {self.alias!r} unreachable for {seconds:.1f}s: {self.last_error or 'no connection'}"

    def record_failure(self, error: BaseException | str) -> None:
        with self._lock:
            self.last_error = _first_line(error)
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self.closed_count += 1
            metrics.db_unreachable.set(1)
            logger.warning("database %r unreachable: %s", self.alias, self.last_error)
            self._start_prober()

    def record_success(self) -> None:
        if self.down_since is None:  # the common case: no lock taken
            return
        with self._lock:
            if self.down_since is None:
                return
            logger.warning("database %r reachable again after %.2fs", self.alias, time.monotonic() - self.down_since)
            self.down_since = None
            metrics.db_unreachable.set(0)
            waiting, self._on_open = self._on_open, []
            self._lock.notify_all()
        for resume in waiting:
            resume()

    def run_when_open(self, action: Callable[[], None]) -> bool:
        """Postpone ``action`` until the gate opens, if it is closed now (True); else False."""
        with self._lock:
            if self.down_since is None:
                return False
            self._on_open.append(action)
            self._start_prober()
            return True

    def wait_deadline(self, request_started: float) -> float:
        """Until when a request that started at ``request_started`` may wait for the database:
        DB_OUTAGE_TIMEOUT from its start, and no later than DB_OUTAGE_TIMEOUT after the gate
        closed (later, it is an outage: answer at once)."""
        down = self.down_since
        limit = request_started + self.timeout
        return limit if down is None else min(limit, down + self.timeout)

    def wait_until_open(self, deadline: float) -> bool:
        """Wait until the monotonic ``deadline`` for the gate to open; True if it is open."""
        with self._lock:
            if self.down_since is not None:
                self._start_prober()
            return self._lock.wait_for(lambda: self.down_since is None, timeout=max(0.0, deadline - time.monotonic()))

    def figures(self) -> dict[str, Any]:
        down = self.down_since
        return {
            "reachable": down is None,
            "unreachable_seconds": None if down is None else round(time.monotonic() - down, 2),
            "last_error": self.last_error if down is not None else None,
            "outages": self.closed_count,
        }

    # --- the prober ---------------------------------------------------------------------------

    def _start_prober(self) -> None:
        """Start the one prober thread of this gate if none runs (the lock is held)."""
        if self._prober is not None and self._prober.is_alive():
            return
        self._prober = threading.Thread(target=self._probe_until_open, name=f"db-probe-{self.alias}", daemon=True)
        self._prober.start()

    def _probe_until_open(self) -> None:
        while self.down_since is not None:
            time.sleep(PROBE_INTERVAL)
            try:
                self.probe()
            except Exception as exc:  # any failure: still unreachable
                with self._lock:
                    self.last_error = _first_line(exc)
                continue
            self.record_success()


_GATES: dict[tuple[int, str], DatabaseGate] = {}
_GATES_LOCK = threading.Lock()


def gate_for(alias: str, *, timeout: float, conn_params: Mapping[str, Any]) -> DatabaseGate:
    """This process's gate for ``alias`` (a forked worker gets its own: gates hold threads)."""
    key = (os.getpid(), alias)
    gate = _GATES.get(key)
    if gate is None:
        with _GATES_LOCK:
            gate = _GATES.setdefault(key, DatabaseGate(alias=alias, timeout=timeout, probe=make_probe(conn_params)))
    return gate


def existing_gate(alias: str) -> DatabaseGate | None:
    return _GATES.get((os.getpid(), alias))


class ConnectTimeout(psycopg.OperationalError):
    """A connection attempt outlived the request's wait; it goes on (bounded by connect_timeout)
    in the background and is closed if it ever succeeds."""


def connect_within(connect: Callable[[], Any], timeout: float) -> Any:
    """Run ``connect()`` in a helper thread and wait for it at most ``timeout`` seconds.

    libpq's connect_timeout is at least two seconds and counts per address; a request must not
    wait that long on a host that drops packets. The attempt itself stays bounded by
    DB_CONNECT_TIMEOUT; if it succeeds after the request has given up, the connection is closed.
    """
    outcome: dict[str, Any] = {}
    handoff = threading.Lock()  # who owns the result: the waiting request, or nobody
    done = threading.Event()

    def attempt() -> None:
        try:
            result: dict[str, Any] = {"connection": connect()}
        except BaseException as exc:  # handed to the waiting request
            result = {"error": exc}
        with handoff:
            if outcome.get("abandoned"):
                if "connection" in result:
                    try:
                        result["connection"].close()
                    except Exception as exc:  # closing a connection nobody wants: nothing to do
                        logger.debug("closing an abandoned connection failed: %s", exc)
                return
            outcome.update(result)
            done.set()

    threading.Thread(target=attempt, name="db-connect", daemon=True).start()
    if not done.wait(timeout=max(0.0, timeout)):
        with handoff:
            if not done.is_set():
                outcome["abandoned"] = True
                raise ConnectTimeout(f"no connection within {timeout:.2f}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["connection"]
