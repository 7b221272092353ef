"""Counting against a rate (config.ratelimit.hit) with leases: a window never admits more than its
limit across processes, a key at an ordinary pace costs one counter update a hit, a key in heavy
use a fraction of that, and a used-up window is refused without asking the counter again.

Against the real counters: PostgreSQL's table (the default), Redis where one answers."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config import ratelimit
from config.db.counters import TABLE
from tests.conftest import BASE_DIR, database_url, redis_counters_or_skip
from tests.reliability.servers import service_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_leases() -> Iterator[None]:
    ratelimit.forget_leases()
    yield
    ratelimit.forget_leases()


def _stored(counter: str, period: int) -> int:
    window = int(time.time() // period)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count FROM {TABLE} WHERE key = %s", [f"rl:{counter}:{period}:{window}"])  # noqa: S608
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _updates(captured: CaptureQueriesContext) -> int:
    return sum(1 for query in captured.captured_queries if TABLE in query["sql"] and "INSERT" in query["sql"])


def test_a_small_limit_is_counted_hit_by_hit_and_a_used_up_window_is_refused_locally():
    counter = f"key:{uuid.uuid4()}"
    with CaptureQueriesContext(connection) as captured:
        assert [ratelimit.hit(counter, 5, 3600)[0] for _ in range(5)] == [True] * 5
        assert ratelimit.hit(counter, 5, 3600)[0] is False
        updates = _updates(captured)
        for _ in range(20):  # hammering a used-up window: no further round trips
            allowed, reset_in = ratelimit.hit(counter, 5, 3600)
            assert not allowed and 1 <= reset_in <= 3600
    # One a hit (a lease never outgrows a 32nd of what the window allows); the fifth hit took the
    # window's last number, so the sixth was refused without asking.
    assert updates == 5
    assert _updates(captured) == 5
    assert _stored(counter, 3600) == 5


def test_a_key_in_heavy_use_takes_leases_and_is_still_counted_in_full():
    counter = f"key:{uuid.uuid4()}"
    hits = 2000
    with CaptureQueriesContext(connection) as captured:
        assert all(ratelimit.hit(counter, 10**9, 3600)[0] for _ in range(hits))
    updates = _updates(captured)
    stored = _stored(counter, 3600)
    print(f"{hits} hits: {updates} counter updates, stored count {stored}")
    assert updates <= hits // 10  # leases: a fraction of a round trip a hit
    assert hits <= stored <= hits + ratelimit.MAX_LEASE  # every hit counted; at most one lease unused


def test_a_slow_key_is_asked_about_at_every_hit():
    counter = f"key:{uuid.uuid4()}"
    with CaptureQueriesContext(connection) as captured:
        for _ in range(4):
            assert ratelimit.hit(counter, 10**9, 3600)[0]
            time.sleep(ratelimit.LEASE_SECONDS * 2)  # slower than a hit a lease
    assert _updates(captured) == 4
    assert _stored(counter, 3600) == 4


HAMMER = """
import django
django.setup()
from config import ratelimit
admitted = refused = 0
while refused < 2:
    if ratelimit.hit({counter!r}, {limit}, 3600)[0]:
        admitted += 1
        refused = 0
    else:
        refused += 1
print(admitted)
"""


def test_processes_counting_one_key_never_admit_more_than_its_limit():
    counter = f"key:{uuid.uuid4()}"
    limit = 3000
    env = service_env(database_url(connection.settings_dict["NAME"]))
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER.format(counter=counter, limit=limit)],
            env=env,
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    admitted = [int(worker.communicate(timeout=120)[0].split()[-1]) for worker in workers]
    seconds = time.monotonic() - started
    print(f"3 processes, limit {limit}: admitted {admitted} (sum {sum(admitted)}) in {seconds:.1f} s")
    assert all(worker.returncode == 0 for worker in workers)
    assert sum(admitted) <= limit  # the promise
    # The leases a process held when the window ran out are counted unused: a few, near the limit.
    assert sum(admitted) >= limit - 3 * (limit // 32)
    assert _stored(counter, 3600) >= limit


def test_redis_counts_leases_too(settings):
    prefix = f"rl-lease-{uuid.uuid4().hex[:8]}"
    server = redis_counters_or_skip(settings, prefix)
    assert all(ratelimit.hit("key:heavy", 10**9, 60)[0] for _ in range(2000))
    assert [ratelimit.hit("key:small", 3, 60)[0] for _ in range(5)] == [True, True, True, False, False]
    counts = {
        name: int(server.get(key))
        for key in server.keys(f"{prefix}:*")
        for name in ("heavy", "small")
        if name in str(key)
    }
    assert 2000 <= counts["heavy"] <= 2000 + ratelimit.MAX_LEASE
    assert counts["small"] == 3  # the third hit took the last number: the rest were refused without asking
    for key in server.keys(f"{prefix}:*"):
        assert 0 < server.ttl(key) <= 61
        server.delete(key)
