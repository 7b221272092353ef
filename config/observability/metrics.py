"""The metric families, and the calls that record them.

Correct under gunicorn with several workers: with ``PROMETHEUS_MULTIPROC_DIR`` set (the gunicorn
config sets a default under the temp directory), every worker writes its values to memory-mapped
files there and a scrape sums them over the workers (``prometheus_client`` multiprocess mode).
Counters and histograms keep a dead worker's counts; gauges are ``livesum`` (the sum over live
workers: a dead worker's file is dropped by the ``child_exit`` hook) or ``max``. Without the
variable (``runserver``, the tests) the values live in this process, as usual.

Labels have bounded values only: method, route template, status class, reason and tier codes,
message role. Never a user, key, session or agent id.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

logger = logging.getLogger(__name__)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
PREFIX = "agent_platform"
VERSION = "1.0.0"

# 1 ms to 100 ms resolved finely (the API's own range), then the slow tail.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
POOL_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)

# --- requests -----------------------------------------------------------------------------------

http_requests = Counter(
    f"{PREFIX}_http_requests",
    "HTTP requests answered, by method, route template and status class.",
    ["method", "route", "status"],
)
http_request_duration = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

# --- the database pool (summed over workers) ----------------------------------------------------

db_pool_size = Gauge(f"{PREFIX}_db_pool_size", "Database connections open.", multiprocess_mode="livesum")
db_pool_max_size = Gauge(
    f"{PREFIX}_db_pool_max_size", "The most connections the pools may open.", multiprocess_mode="livesum"
)
db_pool_checked_out = Gauge(
    f"{PREFIX}_db_pool_checked_out", "Database connections in use by a request.", multiprocess_mode="livesum"
)
db_pool_waiting = Gauge(
    f"{PREFIX}_db_pool_waiting_requests",
    "Requests waiting for a database connection.",
    multiprocess_mode="livesum",
)
db_pool_wait = Histogram(
    f"{PREFIX}_db_pool_wait_seconds",
    "Time a checkout waited for a connection from the pool (a sync worker keeps its checkout across requests).",
    buckets=POOL_WAIT_BUCKETS,
)
db_connection_errors = Counter(f"{PREFIX}_db_connection_errors", "Failed attempts to connect to the database.")
db_statement_timeouts = Counter(
    f"{PREFIX}_db_statement_timeouts", "Statements cancelled by statement_timeout (DB_STATEMENT_TIMEOUT)."
)
db_unreachable = Gauge(
    f"{PREFIX}_db_unreachable_workers",
    "Workers that consider the database unreachable now (config.db.outage).",
    multiprocess_mode="livesum",
)

db_replica_lag = Gauge(
    f"{PREFIX}_db_replica_lag_seconds",
    "Replication lag of each read replica at its last check (config.db.replicas), the worst worker's view.",
    ["replica"],
    multiprocess_mode="livemax",
)
db_replica_usable = Gauge(
    f"{PREFIX}_db_replica_usable",
    "1 while the replica takes routed reads (streaming within REPLICA_MAX_LAG_SECONDS), else 0.",
    ["replica"],
    multiprocess_mode="livemin",
)

# --- authentication, rate limits, conversations -------------------------------------------------

auth_failures = Counter(
    f"{PREFIX}_auth_failures", "Refused credentials, by reason (invalid_key, expired, revoked, token_*...).", ["reason"]
)
rate_limit_refusals = Counter(
    f"{PREFIX}_rate_limit_refusals", "Requests refused by a rate limit, by tier (or auth_failure).", ["tier"]
)
messages_appended = Counter(f"{PREFIX}_messages_appended", "Messages appended to sessions, by role.", ["role"])
tokens_recorded = Counter(f"{PREFIX}_tokens_recorded", "Tokens recorded on appended messages (token_count).")

# --- the processes ------------------------------------------------------------------------------

build_info = Gauge(f"{PREFIX}_build_info", "Always 1; the version as a label.", ["version"], multiprocess_mode="max")
workers = Gauge(
    f"{PREFIX}_workers", "Worker processes alive (that have answered a request).", multiprocess_mode="livesum"
)
worker_cpu = Gauge(
    f"{PREFIX}_worker_cpu_seconds", "CPU time (user and system) of the live workers.", multiprocess_mode="livesum"
)
worker_memory = Gauge(
    f"{PREFIX}_worker_resident_memory_bytes", "Resident memory of the live workers.", multiprocess_mode="livesum"
)
worker_fds = Gauge(
    f"{PREFIX}_worker_open_fds", "Open file descriptors of the live workers.", multiprocess_mode="livesum"
)

build_info.labels(version=VERSION).set(1)

# What is a state, not an event (the pool's figures, this process's CPU, memory and descriptors)
# is sampled by one thread per worker, every SAMPLE_SECONDS and before each scrape it serves:
# nothing on the request path.
SAMPLE_SECONDS = 1.0
_process = ProcessCollector(registry=None)
_PROCESS_GAUGES = {
    "process_cpu_seconds": worker_cpu,
    "process_resident_memory_bytes": worker_memory,
    "process_open_fds": worker_fds,
}
_sampler = {"pid": 0}
sampling = False  # whether this process's sampler runs (the middleware starts it)


def _pool_figures() -> tuple[int, int, int, int]:
    from django.db.backends.postgresql.base import DatabaseWrapper

    size = checked_out = waiting = max_size = 0
    for pool in list(getattr(DatabaseWrapper, "_connection_pools", {}).values()):
        stats = pool.get_stats()
        size += stats.get("pool_size", 0)
        checked_out += stats.get("pool_size", 0) - stats.get("pool_available", 0)
        # config.db.pool.ResilientPool's own count (psycopg's counts every wait slice).
        waiting += getattr(pool, "waiting_requests", stats.get("requests_waiting", 0))
        max_size += stats.get("pool_max", 0)
    return size, checked_out, waiting, max_size


def sample() -> None:
    for family in _process.collect():
        gauge = _PROCESS_GAUGES.get(family.name)
        if gauge is not None and family.samples:
            gauge.set(family.samples[0].value)
    size, checked_out, waiting, max_size = _pool_figures()
    db_pool_size.set(size)
    db_pool_checked_out.set(checked_out)
    db_pool_waiting.set(waiting)
    db_pool_max_size.set(max_size)


def _sample_forever() -> None:
    while True:
        try:
            sample()
        except Exception as exc:  # a figure that cannot be read now is read next time
            logger.debug("metrics sample failed: %s", exc)
        time.sleep(SAMPLE_SECONDS)


def start_sampler() -> None:
    """This process's sampler, once (a forked worker starts its own: threads do not fork)."""
    global sampling
    with _sampler_lock:
        if _sampler["pid"] == os.getpid():
            sampling = True
            return
        _sampler["pid"] = os.getpid()
        # Again in each worker: the master's values (written when the app was preloaded) are
        # wiped from the directory at start.
        workers.set(1)
        build_info.labels(version=VERSION).set(1)
        threading.Thread(target=_sample_forever, name="metrics-sampler", daemon=True).start()
        sampling = True


def _forked() -> None:
    global sampling
    sampling = False


_sampler_lock = threading.Lock()
os.register_at_fork(after_in_child=_forked)


# --- recording, from the places where things happen ---------------------------------------------

# Authentication failure reasons as the API key authenticator names them -> the metric's names.
_KEY_REASONS = {"unknown": "invalid_key", "malformed": "malformed_key"}


def record_auth_failure(reason: str) -> None:
    auth_failures.labels(reason=_KEY_REASONS.get(reason, reason)).inc()


def record_rate_limit_refusal(tier: str) -> None:
    rate_limit_refusals.labels(tier=tier).inc()


def record_replica(alias: str, lag_seconds: float | None, usable: bool) -> None:
    """A replica's state as its monitor found it (once a second per worker); the alias is one of
    the configured replicas, so the label is bounded. An unknown lag keeps the last one seen."""
    if lag_seconds is not None:
        db_replica_lag.labels(alias).set(lag_seconds)
    db_replica_usable.labels(alias).set(1 if usable else 0)


def record_message(role: str, token_count: int) -> None:
    messages_appended.labels(role=role).inc()
    if token_count:
        tokens_recorded.inc(token_count)


# --- exposition ---------------------------------------------------------------------------------


def exposition() -> bytes:
    """The text format: summed over the workers' files in multiprocess mode."""
    start_sampler()
    sample()
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
