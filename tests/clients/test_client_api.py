"""``Client`` and ``AsyncClient`` against the live service: what each operation stores and
answers, the typed errors, idempotent replays, and a dropped answer retried without a duplicate."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent_platform_client import (
    AsyncClient,
    BadRequest,
    Client,
    IdempotencyKeyReused,
    NotFound,
    RevisionMismatch,
    SessionExists,
)
from tests.clients.conftest import Platform
from tests.clients.peers import DroppingProxy

# json.dumps of these must survive the round trip unchanged: key order, 1.0 against 1, null
# against an absent key, NUL inside strings, non-ASCII text.
AWKWARD_ITEM: dict[str, Any] = {
    "type": "function_call_output",
    "call_id": "call_1",
    "z_last_key_first": 1.0,
    "a": None,
    "output": "caf\u00e9 \u0000 \U0001f600 done",
    "nested": {"b": [1, 2.5, True, False, None], "a": {"empty": {}}},
}


def _session(client: Client, **fields: Any) -> str:
    return client.sessions.create("support-bot", "client test", **fields)["id"]


def test_a_session_round_trip_through_the_blocking_client(platform: Platform) -> None:
    with Client(platform.url, platform.key) as client:
        created = client.sessions.create("support-bot", "first", context={"tier": "gold"}, idle_expiry=False)
        assert created["revision"] == 0
        assert created["idle_expiry"] is False
        assert client.sessions.get(created["id"])["title"] == "first"
        updated = client.sessions.update(created["id"], title="renamed", metadata={"k": "v"})
        assert (updated["title"], updated["metadata"]) == ("renamed", {"k": "v"})
        assert [s["id"] for s in client.sessions.iter(agent_id="support-bot")] == [created["id"]]
        completed = client.sessions.complete(created["id"], reason="done")
        assert completed["status"] == "completed"


def test_an_item_comes_back_with_identical_json_dumps(platform: Platform) -> None:
    with Client(platform.url, platform.key) as client:
        session_id = _session(client)
        stored = client.messages.append(session_id, item=AWKWARD_ITEM, kind="function_call_output")
        assert stored["revision"] == 1
        assert stored["role"] == "tool"  # projected: *_output types are tool messages
        (read,) = client.messages.last(session_id, 1)
    assert read["item"] == AWKWARD_ITEM
    assert json.dumps(read["item"]) == json.dumps(AWKWARD_ITEM)
    assert read["kind"] == "function_call_output"


def test_a_batch_is_stored_whole_in_order_and_counts_revisions(platform: Platform) -> None:
    with Client(platform.url, platform.key) as client:
        session_id = _session(client)
        batch = client.messages.append_batch(
            session_id,
            [{"role": "user", "content": f"m{i}"} for i in range(5)],
            state_delta={"step": 1},
        )
        assert [m["sequence"] for m in batch["messages"]] == [1, 2, 3, 4, 5]
        assert batch["revision"] == 1
        assert client.sessions.get(session_id)["context"] == {"step": 1}
        with pytest.raises(RevisionMismatch) as stale:
            client.messages.append(session_id, role="user", content="late", expected_revision=0)
        assert stale.value.revision == 1
        with pytest.raises(BadRequest):
            client.messages.append_batch(session_id, [{"role": "user", "content": "ok"}, {"role": "nobody"}])
        assert [m["content"] for m in client.messages.all(session_id)] == [f"m{i}" for i in range(5)]


def test_last_n_pages_back_past_one_request(platform: Platform) -> None:
    total = 1050
    with Client(platform.url, platform.key) as client:
        session_id = _session(client)
        for start in range(0, total, 100):
            client.messages.append_batch(
                session_id, [{"role": "user", "content": str(i)} for i in range(start, min(start + 100, total))]
            )
        assert [m["content"] for m in client.messages.last(session_id, 3)] == ["1047", "1048", "1049"]
        # Past the service's 1000 a request: the rest comes from the older pages.
        assert [m["sequence"] for m in client.messages.last(session_id, 1003)] == list(range(48, total + 1))
        assert [m["sequence"] for m in client.messages.last(session_id, 5000)] == list(range(1, total + 1))
        assert client.messages.last(session_id, 0) == []
        assert len(list(client.messages.iter(session_id, page_size=150))) == total


def test_pop_and_clear_through_the_client(platform: Platform) -> None:
    with Client(platform.url, platform.key) as client:
        session_id = _session(client)
        client.messages.append_batch(session_id, [{"role": "user", "content": str(i)} for i in range(4)])
        popped = client.messages.pop(session_id, count=2)
        assert [m["content"] for m in popped["messages"]] == ["2", "3"]
        assert client.messages.append(session_id, role="user", content="again")["sequence"] == 3
        cleared = client.messages.clear(session_id)
        assert cleared["removed"] == 3
        assert client.messages.pop(session_id)["messages"] == []
        assert client.messages.all(session_id) == []


def test_a_replayed_key_writes_once_and_a_reused_one_is_refused(platform: Platform) -> None:
    with Client(platform.url, platform.key) as client:
        session_id = _session(client)
        first = client.messages.append(session_id, role="user", content="once", idempotency_key="turn-7")
        again = client.messages.append(session_id, role="user", content="once", idempotency_key="turn-7")
        assert again == first
        with pytest.raises(IdempotencyKeyReused):
            client.messages.append(session_id, role="user", content="different", idempotency_key="turn-7")
        assert len(client.messages.all(session_id)) == 1


def test_an_external_id_names_one_live_session(platform: Platform) -> None:
    with Client(platform.url, platform.key) as client:
        session_id = _session(client, external_id="ticket-42")
        with pytest.raises(SessionExists) as exists:
            _session(client, external_id="ticket-42")
        assert exists.value.session_id == session_id
        found = client.sessions.find(agent_id="support-bot", external_id="ticket-42")
        assert found is not None and found["id"] == session_id


def test_another_users_session_is_not_found(platform: Platform, other_key: str) -> None:
    with Client(platform.url, platform.key) as alice, Client(platform.url, other_key) as bob:
        session_id = _session(alice)
        alice.messages.append(session_id, role="user", content="private")
        with pytest.raises(NotFound):
            bob.messages.all(session_id)
        with pytest.raises(NotFound):
            bob.messages.append(session_id, role="user", content="intrusion")
        with pytest.raises(NotFound):
            bob.messages.pop(session_id)
        assert len(alice.messages.all(session_id)) == 1


def test_a_dropped_answer_after_commit_is_retried_without_a_duplicate(platform: Platform) -> None:
    """A real proxy forwards the batch to the service, which commits it, then closes the client's
    connection without the answer. The client sends the same bytes and key again and gets the
    stored answer replayed; the session holds the batch once."""
    port = int(platform.url.rsplit(":", 1)[1])
    dropped: list[str] = []

    def drop_first_batch(exchange: Any) -> bool:
        if exchange.path.endswith("/messages/batch/") and not dropped:
            dropped.append(exchange.headers["idempotency-key"])
            return True
        return False

    with DroppingProxy(port, drop_first_batch) as proxy, Client(proxy.url, platform.key) as client:
        session_id = _session(client)
        result = client.messages.append_batch(
            session_id, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        )
        batches = [e for e in proxy.exchanges if e.path.endswith("/messages/batch/")]
        stored = client.messages.all(session_id)
    assert [e.dropped for e in batches] == [True, False]
    assert batches[0].status == 201  # the service had answered: the write was committed
    assert batches[0].headers["idempotency-key"] == batches[1].headers["idempotency-key"] == dropped[0]
    assert batches[0].body == batches[1].body
    assert batches[1].response_headers().get("idempotent-replayed") == "true"
    assert [m["content"] for m in stored] == ["a", "b"]
    assert [m["sequence"] for m in result["messages"]] == [1, 2]


def test_a_cancelled_async_append_still_lands_once(platform: Platform) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], bool]:
        async with AsyncClient(platform.url, platform.key) as client:
            session_id = (await client.sessions.create("support-bot", "cancel"))["id"]
            task = asyncio.create_task(
                client.messages.append_batch(session_id, [{"role": "user", "content": str(i)} for i in range(50)])
            )
            await asyncio.sleep(0)  # the request is under way
            task.cancel()
            try:
                await task
                cancelled = False
            except asyncio.CancelledError:
                cancelled = True
            return list(await client.messages.all(session_id)), cancelled

    stored, cancelled = asyncio.run(scenario())
    assert cancelled
    assert [m["content"] for m in stored] == [str(i) for i in range(50)]


def test_lifecycle_and_transfer_through_the_async_client(platform: Platform, make_user: Any, make_key: Any) -> None:
    admin = make_user(roles=["admin"])
    _, admin_key = make_key(admin, scopes=("read", "write", "admin"))
    bob = make_user(roles=["user"])
    _, bob_key = make_key(bob)
    bob_id = str(bob.pk)

    async def scenario() -> None:
        async with AsyncClient(platform.url, platform.key) as alice, AsyncClient(platform.url, admin_key) as staff:
            failed = await alice.sessions.create("support-bot", "to fail")
            assert (await alice.sessions.fail(failed["id"], error="boom"))["status"] == "failed"
            cancelled = await alice.sessions.create("support-bot", "to cancel")
            assert (await alice.sessions.cancel(cancelled["id"], reason="user left"))["status"] == "cancelled"
            gone = await alice.sessions.create("support-bot", "to delete")
            await alice.sessions.delete(gone["id"])
            with pytest.raises(NotFound):
                await alice.sessions.get(gone["id"])
            moved = await alice.sessions.create("support-bot", "to move")
            assert (await staff.sessions.transfer(moved["id"], user=bob_id))["user"] == bob_id
            with pytest.raises(NotFound):
                await alice.sessions.get(moved["id"])
        async with AsyncClient(platform.url, bob_key) as new_owner:
            assert (await new_owner.sessions.get(moved["id"]))["title"] == "to move"

    asyncio.run(scenario())
