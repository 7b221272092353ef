"""Read replicas (config/db/replicas.py) against real streaming replication: a private primary and
a hot standby copied from it with ``pg_basebackup -R`` (the ``streaming_replication`` fixture).

The monitor is pointed at that pair; the routed reads run through a ``replica_0`` alias on the
standby, so ``pg_is_in_recovery()`` on the connection that served them says where they went.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from agent_sessions.models import Session
from config.db import replicas
from config.db.connection import build_database
from config.db.replicas import ReplicaMonitor, mark_sticky, replica_read, serving_alias

ALIAS = "replica_0"


def _params(server: Any, dbname: str) -> dict[str, Any]:
    return {**server.conninfo(dbname), "connect_timeout": 2}


def _write_on_primary(pair: Any) -> None:
    with pair.primary.connect(pair.database, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS replica_probe (n int)")
        conn.execute("INSERT INTO replica_probe VALUES (1)")


def _check_until(monitor: ReplicaMonitor, state: str, timeout: float = 15) -> replicas.ReplicaState:
    deadline = time.monotonic() + timeout
    while True:
        monitor.check_once()
        found = monitor.states[ALIAS]
        if found.state == state or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture
def monitor(streaming_replication: Any) -> Iterator[ReplicaMonitor]:
    pair = streaming_replication
    watcher = ReplicaMonitor(
        primary=_params(pair.primary, pair.database),
        replicas={ALIAS: _params(pair.standby, pair.database)},
        max_lag=2.0,
    )
    try:
        yield watcher
    finally:
        watcher.stop()
        pair.standby.resume_replay()


@pytest.mark.slow
def test_an_idle_caught_up_standby_is_zero_behind(streaming_replication: Any, monitor: ReplicaMonitor) -> None:
    pair = streaming_replication
    _write_on_primary(pair)
    pair.wait_caught_up()
    time.sleep(2.5)  # nothing committed since: the replay timestamp ages, the data does not
    with pair.standby.connect(pair.database) as conn:
        row = conn.execute("SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())").fetchone()
    assert row is not None and float(row[0]) > 2.0

    monitor.check_once()
    state = monitor.states[ALIAS]
    assert state.state == "streaming", state
    assert state.lag_seconds == 0.0
    assert monitor.pick() == ALIAS


@pytest.mark.slow
def test_a_standby_whose_replay_is_paused_is_skipped_until_it_catches_up(
    streaming_replication: Any, monitor: ReplicaMonitor
) -> None:
    pair = streaming_replication
    monitor.check_once()
    assert monitor.states[ALIAS].state == "streaming"

    pair.standby.pause_replay()
    _write_on_primary(pair)
    lagging = _check_until(monitor, "lagging")
    assert lagging.state == "lagging", lagging
    assert lagging.lag_seconds is not None and lagging.lag_seconds > 2.0
    assert lagging.replay_paused is True
    assert lagging.bytes_behind and lagging.bytes_behind > 0
    assert monitor.pick() is None
    # The same state on /metrics (config.observability.metrics): the lag, and not usable.
    assert _gauge("agent_platform_db_replica_lag_seconds") == pytest.approx(lagging.lag_seconds)
    assert _gauge("agent_platform_db_replica_usable") == 0

    pair.standby.resume_replay()
    back = _check_until(monitor, "streaming")  # within REPLICA_MAX_LAG_SECONDS again, maybe still replaying
    assert back.state == "streaming" and back.lag_seconds is not None and back.lag_seconds <= 2.0
    assert back.replay_paused is False
    assert monitor.pick() == ALIAS
    assert _gauge("agent_platform_db_replica_usable") == 1
    assert _gauge("agent_platform_db_replica_lag_seconds") == pytest.approx(back.lag_seconds)


def _gauge(name: str) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, {"replica": ALIAS})


@pytest.mark.slow
def test_a_stopped_standby_is_unreachable_and_found_again(streaming_replication: Any, monitor: ReplicaMonitor) -> None:
    pair = streaming_replication
    monitor.check_once()
    pair.standby.stop()
    try:
        down = _check_until(monitor, "unreachable")
        assert down.state == "unreachable" and down.last_error
        assert monitor.pick() is None
    finally:
        pair.standby.start()
    pair.wait_caught_up()
    assert _check_until(monitor, "streaming").state == "streaming"


@pytest.mark.slow
def test_the_background_check_runs_once_a_second_not_per_request(monitor: ReplicaMonitor) -> None:
    assert monitor.wait_for_first_check(timeout=10)
    first = monitor.states[ALIAS].checked_at
    for _ in range(200):
        monitor.pick()
    assert monitor.states[ALIAS].checked_at == first  # asking costs no check
    time.sleep(1.3)
    assert monitor.states[ALIAS].checked_at != first


# --- routing ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replica_alias(django_db_setup: None, django_db_blocker: Any, streaming_replication: Any) -> Iterator[str]:
    """``replica_0``: the standby, registered once the test databases exist (so setting them up
    leaves it alone) and as a test mirror of ``default`` (so no test flushes it)."""
    database = build_database(streaming_replication.standby_url, django_settings.DB_POOL)
    database["OPTIONS"] = {name: value for name, value in database["OPTIONS"].items() if name != "pool"}
    database["CONN_MAX_AGE"] = 0
    database["TEST"] = {"MIRROR": "default"}
    connections.settings[ALIAS] = connections.configure_settings(
        {"default": dict(connections.settings["default"]), ALIAS: database}
    )[ALIAS]
    try:
        yield ALIAS
    finally:
        with django_db_blocker.unblock():
            connections[ALIAS].close()
        del connections[ALIAS]
        del connections.settings[ALIAS]


routing = pytest.mark.django_db(transaction=True, databases=["default", ALIAS])


@pytest.fixture
def routed(streaming_replication: Any, replica_alias: str, settings: Any) -> Iterator[ReplicaMonitor]:
    """This process reads through ``replica_0``, watched by a monitor of the pair."""
    pair = streaming_replication
    settings.DATABASE_REPLICAS = [ALIAS]
    settings.REPLICA_STICKY_SECONDS = 5
    watcher = ReplicaMonitor(
        primary=_params(pair.primary, pair.database), replicas={ALIAS: _params(pair.standby, pair.database)}, max_lag=2
    )
    watcher.check_once()
    replicas._MONITORS[os.getpid()] = watcher
    try:
        yield watcher
    finally:
        replicas._MONITORS.pop(os.getpid(), None)
        watcher.stop()
        connections[ALIAS].close()


def _in_recovery(alias: str) -> bool:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        row = cursor.fetchone()
    return bool(row and row[0])


@routing
@pytest.mark.slow
def test_a_lag_tolerant_read_is_served_by_the_standby(routed: ReplicaMonitor) -> None:
    def read() -> tuple[str | None, str, list[str], bool]:
        queryset = Session.objects.all()
        with CaptureQueriesContext(connections[ALIAS]) as captured:
            queryset.count()
        served = queryset.db
        return serving_alias(), served, [query["sql"] for query in captured], _in_recovery(served)

    scope, served, queries, in_recovery = replica_read(None, read)
    assert (scope, served) == (ALIAS, ALIAS)
    assert len(queries) == 1 and '"sessions"' in queries[0]
    assert in_recovery is True


@routing
@pytest.mark.slow
def test_reads_outside_a_replica_read_stay_on_the_primary(routed: ReplicaMonitor) -> None:
    queryset = Session.objects.all()
    assert queryset.db == "default"
    assert _in_recovery(queryset.db) is False


@routing
@pytest.mark.slow
def test_reads_inside_a_transaction_stay_on_the_primary(routed: ReplicaMonitor) -> None:
    with transaction.atomic():
        assert replica_read(None, lambda: Session.objects.all().db) == "default"

    def read_then_transaction() -> tuple[str, str]:
        outside = Session.objects.all().db
        with transaction.atomic():
            inside = Session.objects.all().db
        return outside, inside

    assert replica_read(None, read_then_transaction) == (ALIAS, "default")


@routing
@pytest.mark.slow
def test_a_user_who_wrote_reads_from_the_primary_for_the_sticky_window(routed: ReplicaMonitor, settings: Any) -> None:
    settings.REPLICA_STICKY_SECONDS = 1
    mark_sticky("user:writer")
    assert replica_read("user:writer", lambda: Session.objects.all().db) == "default"
    assert replica_read("user:someone-else", lambda: Session.objects.all().db) == ALIAS
    time.sleep(1.2)
    assert replica_read("user:writer", lambda: Session.objects.all().db) == ALIAS


@routing
@pytest.mark.slow
def test_with_every_replica_unfit_reads_go_to_the_primary(streaming_replication: Any, routed: ReplicaMonitor) -> None:
    pair = streaming_replication
    pair.standby.pause_replay()
    try:
        _write_on_primary(pair)
        assert _check_until(routed, "lagging").state == "lagging"
        assert replica_read(None, lambda: Session.objects.all().db) == "default"
    finally:
        pair.standby.resume_replay()


@routing
@pytest.mark.slow
def test_a_replica_that_breaks_during_a_read_is_skipped_and_the_read_runs_on_the_primary(
    streaming_replication: Any, routed: ReplicaMonitor
) -> None:
    pair = streaming_replication
    runs: list[str] = []

    def read() -> int:
        queryset = Session.objects.all()
        runs.append(queryset.db)
        if queryset.db == ALIAS:
            _in_recovery(ALIAS)  # the replica's connection is open; now its server ends it
            with pair.standby.connect(pair.database, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
        return queryset.count()

    assert replica_read(None, read) == Session.objects.count()
    assert runs == [ALIAS, "default"]
    assert routed.states[ALIAS].state == "unreachable"
    assert routed.pick() is None
    assert _check_until(routed, "streaming").state == "streaming"  # the next check finds it fit


@pytest.mark.slow
def test_no_replicas_configured_means_no_monitor_and_no_routing(transactional_db: None, settings: Any) -> None:
    settings.DATABASE_REPLICAS = []
    assert replicas.monitor() is None
    assert replica_read("user:x", lambda: (serving_alias(), Session.objects.all().db)) == (None, "default")


def test_monitor_connections_fail_fast_on_a_closed_port() -> None:
    from tests.reliability.servers import free_port

    watcher = ReplicaMonitor(
        primary={"host": "127.0.0.1", "port": free_port(), "user": "x", "dbname": "x"},
        replicas={ALIAS: {"host": "127.0.0.1", "port": free_port(), "user": "x", "dbname": "x"}},
        max_lag=2,
    )
    started = time.monotonic()
    watcher.check_once()
    assert time.monotonic() - started < 1.5
    assert watcher.states[ALIAS].state == "unreachable"
    assert isinstance(watcher.states[ALIAS].last_error, str)


# --- /health ------------------------------------------------------------------------------------


@routing
@pytest.mark.slow
def test_health_lists_each_replica_with_its_state_and_lag(routed: ReplicaMonitor, client: Any) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    database, replica = body["components"]
    assert database["name"] == "database"
    assert replica["name"] == "replica"
    assert replica["status"] == "healthy"
    assert replica["details"]["alias"] == ALIAS
    assert replica["details"]["state"] == "streaming"
    assert replica["details"]["lag_seconds"] == 0.0
    assert replica["details"]["max_lag_seconds"] == 2.0


@routing
@pytest.mark.slow
def test_a_replica_down_shows_in_health_and_fails_neither_health_nor_readiness(
    streaming_replication: Any, routed: ReplicaMonitor, client: Any
) -> None:
    pair = streaming_replication
    pair.standby.stop()
    try:
        assert _check_until(routed, "unreachable").state == "unreachable"
        health = client.get("/health")
        ready = client.get("/health/ready")
    finally:
        pair.standby.start()
        pair.wait_caught_up()
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    (replica,) = [c for c in health.json()["components"] if c["name"] == "replica"]
    assert replica["status"] == "unhealthy"
    assert replica["details"]["state"] == "unreachable"
    assert replica["error"]
    assert ready.status_code == 200, ready.json()


# --- which endpoints read from the replica ------------------------------------------------------
# The test database is not the pair's: alice's rows exist only on the primary (the test
# database), so a read the standby served finds none of them.


def _replica_sql(captured: CaptureQueriesContext) -> str:
    return " ".join(query["sql"] for query in captured)


@routing
@pytest.mark.slow
def test_list_endpoints_and_message_pages_read_from_the_replica_details_from_the_primary(
    routed: ReplicaMonitor, alice: Any
) -> None:
    from agent_sessions.services import session_create

    session = session_create(actor=alice.user, owner=alice.user, agent_id="a", title="on the primary")
    with CaptureQueriesContext(connections[ALIAS]) as captured:
        listed = alice.client.get("/api/v1/sessions/")
        page = alice.client.get(f"/api/v1/sessions/{session.pk}/messages/")
        stats = alice.client.get("/api/v1/sessions/stats/")
    assert listed.status_code == 200 and listed.json()["results"] == []  # the standby has no such rows
    assert page.status_code == 404  # nor the session
    assert stats.status_code == 200 and stats.json()["total_sessions"] == 0
    assert '"sessions"' in _replica_sql(captured) and '"session_messages"' in _replica_sql(captured)
    assert "api_keys" not in _replica_sql(captured)  # authentication stayed on the primary

    with CaptureQueriesContext(connections[ALIAS]) as captured:
        detail = alice.client.get(f"/api/v1/sessions/{session.pk}/")
    assert detail.status_code == 200 and detail.json()["title"] == "on the primary"
    assert len(captured) == 0


@routing
@pytest.mark.slow
def test_after_a_write_the_writer_lists_from_the_primary(routed: ReplicaMonitor, alice: Any, bob: Any) -> None:
    created = alice.client.post("/api/v1/sessions/", {"agent_id": "a", "title": "just written"}, format="json")
    assert created.status_code == 201
    listed = alice.client.get("/api/v1/sessions/")
    assert [s["id"] for s in listed.json()["results"]] == [created.json()["id"]]
    with CaptureQueriesContext(connections[ALIAS]) as captured:
        assert bob.client.get("/api/v1/sessions/").json()["results"] == []  # bob did not write: the replica
    assert '"sessions"' in _replica_sql(captured)


@routing
@pytest.mark.slow
def test_admin_change_lists_read_from_the_replica(routed: ReplicaMonitor, root_client: Any) -> None:
    with CaptureQueriesContext(connections[ALIAS]) as captured:
        response = root_client.get("/admin/agent_sessions/session/")
        audit = root_client.get("/admin/audit/auditlog/")
    assert response.status_code == 200 and audit.status_code == 200
    assert '"sessions"' in _replica_sql(captured) and '"audit_logs"' in _replica_sql(captured)
    assert "django_session" not in _replica_sql(captured)  # the staff member's session: the primary


# --- settings -----------------------------------------------------------------------------------


def test_replica_urls_become_aliases_with_the_primarys_pool_settings() -> None:
    from config.db.connection import PoolSettings
    from config.db.replicas import replica_databases

    pool = PoolSettings(pool_size=1, max_overflow=2)
    databases = replica_databases(["postgresql://u@db-r0:5432/app", "postgresql://u@db-r1/app"], pool)
    assert list(databases) == ["replica_0", "replica_1"]
    first = databases["replica_0"]
    assert (first["ENGINE"], first["HOST"], first["PORT"], first["NAME"]) == ("config.db.backend", "db-r0", 5432, "app")
    assert first["OPTIONS"]["pool"]["name"] == "replica_0"
    assert (first["OPTIONS"]["pool"]["min_size"], first["OPTIONS"]["pool"]["max_size"]) == (1, 3)
    assert first["TEST"] == {"MIRROR": "default"}


def test_a_malformed_replica_url_stops_startup_naming_the_variable() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from config.db.connection import PoolSettings
    from config.db.replicas import replica_databases

    with pytest.raises(ImproperlyConfigured, match="DATABASE_REPLICA_URLS item 2"):
        replica_databases(["postgresql://u@db/app", "mysql://u@db/app"], PoolSettings())
