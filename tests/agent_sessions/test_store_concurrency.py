"""The session store under real concurrency: live gunicorn, real threads, real transactions.

Agent frameworks write one batch per model response and rely on it landing whole; a client
retries a mutation with the same Idempotency-Key, sometimes while the first is still running."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.db import connection

from agent_sessions.models import Message, Session
from idempotency.models import IdempotencyKey
from tests.conftest import database_url
from tests.reliability.servers import Gunicorn, Reply, http, service_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def server(transactional_db: None) -> Iterator[Gunicorn]:
    env = service_env(database_url(connection.settings_dict["NAME"]), DB_POOL_SIZE="2", DB_MAX_OVERFLOW="8")
    gunicorn = Gunicorn(env, workers=2, threads=8)
    gunicorn.start()
    try:
        yield gunicorn
    finally:
        output = gunicorn.stop()
        cache.clear()
    assert "Traceback" not in output, output[-5000:]


def run_together(count: int, work) -> list[Reply]:
    replies: list[Reply | None] = [None] * count
    barrier = threading.Barrier(count)

    def worker(n: int) -> None:
        barrier.wait()
        replies[n] = work(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [reply for reply in replies if reply is not None]


def test_two_writers_batches_stay_contiguous(server, alice):
    session = Session.objects.create(user=alice.user, agent_id="a", title="hot")
    url = f"{server.url}/api/v1/sessions/{session.pk}/messages/batch/"
    batches, size = 15, 7

    def writer(n: int) -> Reply:
        last = Reply(0, b"", {}, 0.0)
        for b in range(batches):
            body = {"messages": [{"item": {"type": "message", "writer": n, "batch": b, "i": i}} for i in range(size)]}
            last = http("POST", url, key=alice.raw_key, body=body)
            assert last.status == 201, last.body
        return last

    run_together(2, writer)
    items = list(Message.objects.filter(session=session).order_by("sequence").values_list("sequence", "item"))
    assert [sequence for sequence, _ in items] == list(range(1, 2 * batches * size + 1))
    parsed = [json.loads(item) for _, item in items]
    for start in range(0, len(parsed), size):
        chunk = parsed[start : start + size]
        assert len({(p["writer"], p["batch"]) for p in chunk}) == 1, f"a batch was split at {start}"
        assert [p["i"] for p in chunk] == list(range(size))
    stored = Session.objects.get(pk=session.pk)
    assert (stored.total_messages, stored.revision) == (2 * batches * size, 2 * batches)


@pytest.mark.parametrize("route", ["messages/", "messages/batch/", "messages/pop/"])
def test_concurrent_requests_with_one_key_store_once_and_get_one_answer(server, alice, route):
    session = Session.objects.create(user=alice.user, agent_id="a", title="keyed")
    for text in ("a", "b", "c"):
        session.add_message("user", text)
    url = f"{server.url}/api/v1/sessions/{session.pk}/{route}"
    body = {
        "messages/": {"role": "user", "content": "once"},
        "messages/batch/": {"messages": [{"role": "user", "content": "once"}, {"role": "user", "content": "too"}]},
        "messages/pop/": {"count": 1},
    }[route]
    replies = run_together(
        8, lambda n: http("POST", url, key=alice.raw_key, body=body, headers={"Idempotency-Key": "k"})
    )
    assert len({reply.status for reply in replies}) == 1 and replies[0].status in (200, 201), [r.body for r in replies]
    assert len({reply.body for reply in replies}) == 1
    assert sum(1 for reply in replies if reply.headers.get("Idempotent-Replayed") == "true") == 7
    contents = list(Message.objects.filter(session=session).order_by("sequence").values_list("content", flat=True))
    assert (
        contents
        == {
            "messages/": ["a", "b", "c", "once"],
            "messages/batch/": ["a", "b", "c", "once", "too"],
            "messages/pop/": ["a", "b"],
        }[route]
    )
    assert IdempotencyKey.objects.count() == 1
