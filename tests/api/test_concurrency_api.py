"""Real threads, real HTTP (the live server), real transactions."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from django.db import connection

from agent_sessions.models import Message, Session

pytestmark = pytest.mark.django_db(transaction=True)


def _post(url: str, raw_key: str, body: dict) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_16_threads_appending_through_the_api(live_server, alice):
    session = Session.objects.create(user=alice.user, agent_id="a", title="hot")
    url = f"{live_server.url}/api/v1/sessions/{session.pk}/messages/"
    threads_count, per_thread = 16, 10
    statuses: list[int] = []
    barrier = threading.Barrier(threads_count)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            statuses.append(_post(url, alice.raw_key, {"role": "user", "content": f"{n}:{i}", "token_count": 2}))
        connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    total = threads_count * per_thread
    assert statuses == [201] * total
    rows = list(Message.objects.filter(session=session).order_by("sequence").values_list("sequence", "content"))
    assert [s for s, _ in rows] == list(range(1, total + 1))
    for n in range(threads_count):
        mine = [int(c.split(":")[1]) for _, c in rows if c.startswith(f"{n}:")]
        assert mine == list(range(per_thread)), "a thread's messages came out of order"
    stored = Session.objects.get(pk=session.pk)
    assert (stored.total_messages, stored.total_tokens) == (total, 2 * total)


def test_two_concurrent_creates_with_one_email(live_server, admin):
    url = f"{live_server.url}/api/v1/users/"
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def create(email: str) -> None:
        barrier.wait()
        statuses.append(_post(url, admin.raw_key, {"email": email, "name": "Twin"}))
        connection.close()

    threads = [threading.Thread(target=create, args=(e,)) for e in ("twin@example.com", "TWIN@example.com")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(statuses) == [201, 400]
