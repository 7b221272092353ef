"""The database gate (config.db.outage) on its own: the outage clock, the prober, bounded connects.

The gate's probe is a parameter; here it is a real TCP connect to a real listener the test
opens and closes, so the prober is seen to find a peer that comes back. End to end, against a
real PostgreSQL in every pool mode: tests/reliability/test_database_outages.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from config.db.outage import PROBE_INTERVAL, ConnectTimeout, DatabaseGate, connect_within, make_probe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tcp_probe(port: int) -> Callable[[], None]:
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=0.25).close()


def test_requests_wait_only_during_the_first_outage_timeout_of_an_outage():
    gate = DatabaseGate(alias="t", timeout=1.5, probe=tcp_probe(free_port()))
    assert gate.wait_deadline(100.0) == 101.5  # open gate: a request may wait its own 1.5 s
    gate.down_since = 100.0
    assert gate.wait_deadline(100.5) == 101.5  # early in the outage: until 1.5 s after it began
    assert gate.wait_deadline(103.0) == 101.5  # later: no wait at all, answer at once


def test_the_prober_opens_the_gate_when_the_peer_answers_again_and_runs_what_waited():
    port = free_port()
    gate = DatabaseGate(alias="t", timeout=1.5, probe=tcp_probe(port))
    resumed: list[str] = []
    gate.record_failure(ConnectionRefusedError("refused"))
    assert gate.is_down and gate.closed_count == 1 and "refused" in gate.unreachable_message()
    assert gate.run_when_open(lambda: resumed.append("replacement"))
    started = time.monotonic()
    assert not gate.wait_until_open(started + 0.6)  # nobody listens yet
    assert gate.is_down and resumed == []

    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen()
    try:
        back = time.monotonic()
        assert gate.wait_until_open(back + 2)
        assert time.monotonic() - back <= PROBE_INTERVAL + 0.5
    finally:
        listener.close()
    assert not gate.is_down and resumed == ["replacement"]
    assert not gate.run_when_open(lambda: resumed.append("again"))  # open: nothing postponed
    assert gate.figures()["reachable"] is True and gate.figures()["outages"] == 1


def test_a_second_failure_keeps_the_first_outage_clock():
    gate = DatabaseGate(alias="t", timeout=1.5, probe=tcp_probe(free_port()))
    gate.record_failure("first")
    first = gate.down_since
    gate.record_failure("second")
    assert gate.down_since == first and gate.last_error == "second" and gate.closed_count == 1


def test_a_connect_is_waited_for_at_most_its_budget_and_a_late_one_is_closed():
    assert connect_within(lambda: "connection", 1.0) == "connection"
    with pytest.raises(ValueError, match="bad"):
        connect_within(lambda: (_ for _ in ()).throw(ValueError("bad")), 1.0)

    class Slow:
        closed = threading.Event()

        def close(self) -> None:
            self.closed.set()

    slow = Slow()

    def late() -> Slow:
        time.sleep(0.5)
        return slow

    started = time.monotonic()
    with pytest.raises(ConnectTimeout):
        connect_within(late, 0.1)
    assert time.monotonic() - started < 0.4
    assert slow.closed.wait(2), "the connection made after the request gave up was left open"


def test_the_probe_of_a_tcp_host_gives_up_quickly_on_a_port_nobody_listens_on(db):
    from django.db import connection

    params = {**connection.get_connection_params(), "host": "127.0.0.1", "port": free_port(), "connect_timeout": 2}
    probe = make_probe(params)
    started = time.monotonic()
    with pytest.raises(OSError):
        probe()
    assert time.monotonic() - started < 0.5
    make_probe(connection.get_connection_params())()  # and the real database answers it
