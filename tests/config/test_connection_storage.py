"""Each thread's database connections, kept in a plain thread-local (config.db.storage): every
thread still has its own, a thread keeps the one it has, and database work inside a running event
loop is still refused, as Django refuses it."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connection, connections


def test_connections_live_in_a_plain_thread_local():
    assert type(connections._connections) is threading.local


def test_each_thread_has_its_own_connection_and_keeps_it():
    mine = connections["default"]
    assert connections["default"] is mine
    seen: dict[str, object] = {}

    def other() -> None:
        seen["first"] = connections["default"]
        seen["again"] = connections["default"]
        seen["all"] = connections.all(initialized_only=True)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen["first"] is seen["again"]
    assert seen["first"] is not mine
    assert seen["all"] == [seen["first"]]


@pytest.mark.django_db(transaction=True)
def test_a_thread_queries_over_its_own_backend():
    def backend_pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = int(cursor.fetchone()[0])
        return pid

    pids: list[int] = []

    def other() -> None:
        try:
            pids.append(backend_pid())
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert pids and pids[0] != backend_pid()


def test_database_work_inside_a_running_event_loop_is_still_refused():
    async def query() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(query())
