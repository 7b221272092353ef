"""Read replicas: which reads may go to a streaming standby, and which standbys are fit to serve them.

* ``DATABASE_REPLICA_URLS`` adds one ``DATABASES`` alias per standby (``replica_0``, ``replica_1``
  ...), with the primary's engine and pool settings (``replica_databases``).
* Nothing goes to a replica unless the code asked: a read that tolerates replication lag (list
  endpoints, message pages, audit-log pages, session stats, admin change lists) runs inside
  ``replica_read(...)``; everything else, including authentication and every read inside a
  transaction, stays on the primary (``ReplicaRouter``).
* Read your own writes: a mutating request marks its user sticky in the default cache (Redis or
  the database cache: shared by every app host) for ``REPLICA_STICKY_SECONDS``; a sticky user's
  reads go to the primary (``mark_sticky`` / ``is_sticky``).
* Lag and failure: one ``ReplicaMonitor`` per process checks every standby once per second in a
  background thread (never per request). Lag is ``now() - pg_last_xact_replay_timestamp()`` on the
  standby, bounded by how long ago the primary's ``pg_current_wal_lsn()`` was last at or below
  the standby's ``pg_last_wal_replay_lsn()`` (an idle primary commits nothing, so the timestamp
  alone would grow forever on a standby that is fully caught up); a standby whose replay LSN has
  reached the primary's is 0 behind. A standby lagging more than ``REPLICA_MAX_LAG_SECONDS``,
  unreachable, or no longer in recovery is skipped until a check finds it fit again; with none
  fit, reads go to the primary. A routed read whose replica breaks mid-request is run again on
  the primary and the replica is skipped at once.

Plumbing: it knows psycopg, the connection settings and Django's cache, nothing of the apps.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

from config.db.connection import PoolSettings, build_database
from config.db.outage import PROBE_TCP_TIMEOUT, _first_line, existing_gate, tcp_check
from config.observability import metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A replica that breaks under a read raises one of these; the read runs again on the primary.
_READ_FAILURES = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
CHECK_INTERVAL = 1.0  # seconds between two checks of the standbys, per process
# Reads of these apps never leave the primary: the cache table (rate counters, sticky markers)
# and the admin's sessions (a fresh login, or a raw key waiting to be shown once).
PRIMARY_ONLY_APPS = frozenset({"django_cache", "sessions"})


def replica_alias(index: int) -> str:
    return f"replica_{index}"


def replica_databases(urls: list[str], pool: PoolSettings) -> dict[str, dict[str, Any]]:
    """The ``DATABASES`` entries of ``DATABASE_REPLICA_URLS``: the primary's engine and pool settings,
    each alias its own pool; under the test runner they mirror ``default`` (no test database)."""
    databases = {}
    for index, url in enumerate(urls):
        alias = replica_alias(index)
        try:
            database = build_database(url, pool)
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(f"DATABASE_REPLICA_URLS item {index + 1}: {exc}") from exc
        if "pool" in database["OPTIONS"]:
            database["OPTIONS"]["pool"] = {**database["OPTIONS"]["pool"], "name": alias}
        database["TEST"] = {"MIRROR": DEFAULT_DB_ALIAS}
        databases[alias] = database
    return databases


def configured_replicas() -> list[str]:
    return list(getattr(settings, "DATABASE_REPLICAS", []))


# --- the standbys' state --------------------------------------------------------------------


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass
class ReplicaState:
    alias: str
    state: str = "unknown"  # unknown | streaming | lagging | unreachable | not_standby
    lag_seconds: float | None = None
    replay_paused: bool | None = None
    bytes_behind: int | None = None
    last_error: str | None = None
    checked_at: float | None = None  # monotonic

    @property
    def usable(self) -> bool:
        return self.state == "streaming"

    def figures(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "state": self.state,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "bytes_behind": self.bytes_behind,
            "replay_paused": self.replay_paused,
            "checked_seconds_ago": None if self.checked_at is None else round(time.monotonic() - self.checked_at, 2),
            "error": self.last_error,
        }


_STANDBY_SQL = """
    SELECT pg_is_in_recovery(),
           pg_last_wal_replay_lsn()::text,
           EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8,
           CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END
"""


class _Link:
    """One kept connection of the monitor (to the primary or to one standby), remade on failure,
    a TCP connect first (config.db.outage's probing style: a host that drops packets costs
    PROBE_TCP_TIMEOUT, not the connect timeout)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = {
            name: value for name, value in params.items() if name not in {"cursor_factory", "pool", "prepare_threshold"}
        }
        self.params["connect_timeout"] = 2  # libpq's minimum
        self.conn: psycopg.Connection[Any] | None = None

    def fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        try:
            if self.conn is None or self.conn.closed:
                tcp_check(self.params, timeout=PROBE_TCP_TIMEOUT)
                self.conn = psycopg.connect(**self.params, autocommit=True, prepare_threshold=None)
            row = self.conn.execute(sql, params).fetchone()
            assert row is not None
            return tuple(row)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


@dataclass
class ReplicaMonitor:
    """The standbys of one process, as its last check found them."""

    primary: Mapping[str, Any]
    replicas: Mapping[str, Mapping[str, Any]]
    max_lag: float
    interval: float = CHECK_INTERVAL
    states: dict[str, ReplicaState] = field(default_factory=dict)
    # (monotonic time, primary WAL position) of recent checks: how long ago the primary was at
    # most where a standby has replayed to is a bound on its lag that an idle primary keeps small.
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=120), repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _checked: threading.Event = field(default_factory=threading.Event, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _turn: Iterator[int] = field(default_factory=itertools.count, repr=False)

    def __post_init__(self) -> None:
        self.states = {alias: ReplicaState(alias) for alias in self.replicas}
        self._primary_link = _Link(self.primary)
        self._links = {alias: _Link(params) for alias, params in self.replicas.items()}

    # --- what requests ask (no I/O) ---

    def usable(self) -> list[str]:
        self.start()
        fit = []
        for alias, state in self.states.items():
            gate = existing_gate(alias)
            if state.usable and (gate is None or not gate.is_down):
                fit.append(alias)
        return fit

    def pick(self) -> str | None:
        """A fit standby (round robin), or None: read from the primary."""
        fit = self.usable()
        if not fit:
            return None
        return fit[next(self._turn) % len(fit)]

    def report_failure(self, alias: str, error: BaseException) -> None:
        """A routed read broke on ``alias``: skip it until a check finds it fit again."""
        state = self.states.get(alias)
        if state is not None and state.state != "unreachable":
            logger.warning("replica %r failed a read, skipped: %s", alias, _first_line(error))
            state.state, state.last_error = "unreachable", _first_line(error)

    def figures(self) -> list[dict[str, Any]]:
        return [state.figures() for state in self.states.values()]

    def wait_for_first_check(self, timeout: float) -> bool:
        self.start()
        return self._checked.wait(timeout)

    # --- the checker ---

    def start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-replica-monitor", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._primary_link.close()
        for link in self._links.values():
            link.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.check_once()
            except Exception:  # the checker must outlive anything a check throws
                logger.exception("replica check failed")
            self._checked.set()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def check_once(self) -> None:
        primary_lsn: int | None = None
        try:
            (position,) = self._primary_link.fetchone("SELECT pg_current_wal_lsn()::text")
            primary_lsn = _lsn(position)
            self._samples.append((time.monotonic(), primary_lsn))
        except Exception as exc:  # the primary's own outage handling is config.db.outage's job
            logger.debug("replica check: primary unreachable: %s", _first_line(exc))
        for alias, link in self._links.items():
            state = self.states[alias]
            self._check(state, link, primary_lsn)
            metrics.record_replica(alias, state.lag_seconds, state.state == "streaming")

    def _check(self, state: ReplicaState, link: _Link, primary_lsn: int | None) -> None:
        try:
            in_recovery, replay, timestamp_lag, paused = link.fetchone(_STANDBY_SQL)
        except Exception as exc:
            if state.state != "unreachable":
                logger.warning("replica %r unreachable: %s", state.alias, _first_line(exc))
            state.state, state.last_error, state.lag_seconds = "unreachable", _first_line(exc), None
            state.checked_at = time.monotonic()
            return
        state.checked_at = time.monotonic()
        state.replay_paused = paused
        state.last_error = None
        if not in_recovery or replay is None:
            state.state, state.lag_seconds, state.bytes_behind = "not_standby", None, None
            return
        replayed = _lsn(replay)
        state.bytes_behind = None if primary_lsn is None else max(0, primary_lsn - replayed)
        state.lag_seconds = self._lag(replayed, primary_lsn, timestamp_lag)
        fit = state.lag_seconds is not None and state.lag_seconds <= self.max_lag
        previous, state.state = state.state, "streaming" if fit else "lagging"
        if previous != state.state and previous != "unknown":
            logger.warning("replica %r is %s (lag %s s)", state.alias, state.state, state.lag_seconds)

    def _lag(self, replayed: int, primary_lsn: int | None, timestamp_lag: float | None) -> float | None:
        if primary_lsn is not None and replayed >= primary_lsn:
            return 0.0  # everything the primary had a moment ago is replayed, however old its last commit
        now = time.monotonic()
        bounds = [now - seen for seen, position in self._samples if position <= replayed]
        if timestamp_lag is not None:
            bounds.append(max(0.0, timestamp_lag))
        return min(bounds) if bounds else None


_MONITORS: dict[int, ReplicaMonitor] = {}
_MONITORS_LOCK = threading.Lock()


def _connection_params(alias: str) -> dict[str, Any]:
    params: dict[str, Any] = connections[alias].get_connection_params()
    return params


def monitor() -> ReplicaMonitor | None:
    """This process's monitor of the configured standbys (a forked worker gets its own), or None."""
    aliases = configured_replicas()
    if not aliases:
        return None
    found = _MONITORS.get(os.getpid())
    if found is None:
        with _MONITORS_LOCK:
            found = _MONITORS.get(os.getpid())
            if found is None:
                found = ReplicaMonitor(
                    primary=_connection_params(DEFAULT_DB_ALIAS),
                    replicas={alias: _connection_params(alias) for alias in aliases},
                    max_lag=settings.REPLICA_MAX_LAG_SECONDS,
                )
                _MONITORS[os.getpid()] = found
    return found


# --- which reads go where -------------------------------------------------------------------


@dataclass
class _Scope:
    alias: str  # the standby this scope's reads go to
    used: bool = False


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("replica_scope", default=None)


class ReplicaRouter:
    """DATABASE_ROUTERS: reads inside ``replica_read`` go to its standby, outside any transaction of
    the primary; every other read, and every write and migration, is the primary's."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        scope = _scope.get()
        if scope is None or model._meta.app_label in PRIMARY_ONLY_APPS:
            return None
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return None  # a read inside a write's transaction sees that transaction
        scope.used = True
        return scope.alias

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # a standby holds the primary's rows

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        return None if db == DEFAULT_DB_ALIAS else False


def user_principal(user_id: object) -> str:
    """Whose writes a sticky marker stands for: the user (any of their keys, tokens or admin session)."""
    return f"user:{user_id}"


def request_principal(request: Any) -> str | None:
    """The sticky principal of an authenticated request (DRF's or Django's), else None."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user_principal(user.pk)


def sticky_key(principal: str) -> str:
    return f"replica-sticky:{principal}"


def mark_sticky(principal: str) -> None:
    """``principal`` wrote: its reads stay on the primary for REPLICA_STICKY_SECONDS, on every host."""
    from django.core.cache import cache

    seconds = settings.REPLICA_STICKY_SECONDS
    if seconds > 0:
        try:
            cache.set(sticky_key(principal), 1, timeout=seconds)
        except Exception as exc:  # the write is done; a cache outage must not turn it into a 500
            logger.warning("could not mark %s sticky to the primary: %s", principal, _first_line(exc))


def is_sticky(principal: str) -> bool:
    """Whether ``principal`` wrote within REPLICA_STICKY_SECONDS; when the cache cannot say, yes
    (the primary is always right)."""
    from django.core.cache import cache

    if settings.REPLICA_STICKY_SECONDS <= 0:
        return False
    try:
        return cache.get(sticky_key(principal)) is not None
    except Exception as exc:  # the shared cache is down: read from the primary
        logger.warning("sticky marker unreadable, reading from the primary: %s", _first_line(exc))
        return True


def replica_read(principal: str | None, read: Callable[[], T]) -> T:
    """Run ``read`` (a read that tolerates REPLICA_MAX_LAG_SECONDS of lag) on a fit standby, unless
    ``principal`` wrote within REPLICA_STICKY_SECONDS or none is fit: then on the primary. If the
    standby breaks during the read, it is skipped and ``read`` runs again on the primary."""
    watcher = monitor()
    if watcher is None or _scope.get() is not None or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return read()
    alias = watcher.pick()
    if alias is None or (principal is not None and is_sticky(principal)):
        return read()
    scope = _Scope(alias)
    token = _scope.set(scope)
    try:
        return read()
    except _READ_FAILURES as exc:
        if not scope.used:
            raise
        watcher.report_failure(alias, exc)
        with contextlib.suppress(Exception):
            connections[alias].close()
    finally:
        _scope.reset(token)
    return read()


def serving_alias() -> str | None:
    """The standby the current ``replica_read`` sends its reads to (None: the primary)."""
    scope = _scope.get()
    return None if scope is None else scope.alias
