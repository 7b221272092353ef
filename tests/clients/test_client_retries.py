"""When the client sends a request again, how long it waits, and that it never does for a 4xx
other than 429: against a scripted HTTP server for the fault statuses, and against the live
service for a real 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from agent_platform_client import (
    AsyncClient,
    BadRequest,
    Client,
    IdempotencyKeyReused,
    NotFound,
    RateLimited,
    RetryPolicy,
    RevisionMismatch,
    ServiceUnavailable,
    SessionExists,
    TransportError,
)
from agent_platform_client.errors import parse_retry_after
from tests.clients.peers import Reply, ScriptedServer
from tests.reliability.servers import free_port

SESSION = "7d1f3c2e-8a8b-4c1e-9f0a-1b2c3d4e5f60"
STORED = {"id": "m1", "sequence": 1, "role": "user", "content": "hi", "kind": "message", "item": None, "revision": 1}
FAST = RetryPolicy(max_attempts=4, backoff_base=0.05, backoff_max=0.2)


def test_it_waits_as_long_as_retry_after_says_and_resends_the_same_key_and_bytes() -> None:
    with (
        ScriptedServer(
            [Reply(503, {"detail": "db", "code": "database_unavailable"}, {"Retry-After": "1"}), Reply(201, STORED)]
        ) as server,
        Client(server.url, "sk_test") as client,
    ):
        started = time.monotonic()
        stored = client.messages.append(SESSION, role="user", content="hi")
    assert stored == STORED
    first, second = server.attempts
    assert second.at - first.at >= 1.0
    assert time.monotonic() - started < 5
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.body == second.body
    assert first.path == f"/api/v1/sessions/{SESSION}/messages/"
    assert first.headers["authorization"] == "Bearer sk_test"


def test_async_client_honours_retry_after_on_429_too() -> None:
    async def append() -> object:
        async with AsyncClient(server.url, "sk_test") as client:
            return await client.messages.append(SESSION, role="user", content="hi")

    with ScriptedServer(
        [Reply(429, {"detail": "slow down", "code": "throttled"}, {"Retry-After": "1"}), Reply(201, STORED)]
    ) as server:
        assert asyncio.run(append()) == STORED
    first, second = server.attempts
    assert second.at - first.at >= 1.0
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


def test_without_retry_after_it_backs_off_on_502_503_504_with_one_key() -> None:
    replies = [Reply(502, {"detail": "bad gateway"}), Reply(503, {"detail": "down"}), Reply(504, {"detail": "timeout"})]
    with ScriptedServer([*replies, Reply(201, STORED)]) as server, Client(server.url, "sk_test", retry=FAST) as client:
        client.messages.append(SESSION, role="user", content="hi")
    assert len(server.attempts) == 4
    assert len({attempt.headers["idempotency-key"] for attempt in server.attempts}) == 1
    gaps = [b.at - a.at for a, b in zip(server.attempts, server.attempts[1:], strict=False)]
    assert all(0.02 <= gap < 3 for gap in gaps), gaps


def test_it_gives_up_at_once_when_retry_after_is_past_its_bound() -> None:
    policy = RetryPolicy(max_retry_after=5)
    with (
        ScriptedServer([Reply(429, {"detail": "slow down", "code": "throttled"}, {"Retry-After": "120"})]) as server,
        Client(server.url, "sk_test", retry=policy) as client,
        pytest.raises(RateLimited) as caught,
    ):
        client.sessions.get(SESSION)
    assert caught.value.retry_after == 120
    assert len(server.attempts) == 1


def test_it_stops_after_max_attempts_with_the_last_error() -> None:
    with (
        ScriptedServer([Reply(503, {"detail": "down", "code": "database_unavailable"})] * 3) as server,
        Client(server.url, "sk_test", retry=RetryPolicy(max_attempts=3, backoff_base=0.01)) as client,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        client.messages.clear(SESSION)
    assert len(server.attempts) == 3
    assert caught.value.code == "database_unavailable"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"item": ["Nesting too deep."]}, BadRequest),
        (404, {"detail": "Not found.", "code": "not_found"}, NotFound),
        (409, {"detail": "stale", "code": "revision_mismatch", "revision": 7}, RevisionMismatch),
        (409, {"detail": "exists", "code": "session_exists", "session_id": SESSION}, SessionExists),
        (422, {"detail": "other body", "code": "idempotency_key_reused"}, IdempotencyKeyReused),
    ],
)
def test_it_never_retries_other_4xx_and_raises_the_typed_error(status: int, body: dict, error: type) -> None:
    with (
        ScriptedServer([Reply(status, body), Reply(201, STORED)]) as server,
        Client(server.url, "sk_test", retry=FAST) as client,
        pytest.raises(error) as caught,
    ):
        client.messages.append(SESSION, role="user", content="hi")
    assert len(server.attempts) == 1
    assert caught.value.status == status
    if error is RevisionMismatch:
        assert caught.value.revision == 7
    if error is SessionExists:
        assert caught.value.session_id == SESSION
    if error is BadRequest:
        assert caught.value.errors == body


def test_a_key_in_flight_elsewhere_is_waited_for_and_replayed() -> None:
    in_flight = Reply(409, {"detail": "in flight", "code": "idempotency_key_in_flight"}, {"Retry-After": "0"})
    with (
        ScriptedServer([in_flight, Reply(201, STORED, {"Idempotent-Replayed": "true"})]) as server,
        Client(server.url, "sk_test", retry=FAST) as client,
    ):
        assert client.messages.append(SESSION, role="user", content="hi", idempotency_key="turn-1") == STORED
    assert [a.headers["idempotency-key"] for a in server.attempts] == ["turn-1", "turn-1"]


def test_no_answer_at_all_is_retried_then_a_transport_error() -> None:
    port = free_port()  # nothing listens there
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01)
    with (
        Client(f"http://127.0.0.1:{port}", "sk_test", retry=policy) as client,
        pytest.raises(TransportError, match="after 3 attempt"),
    ):
        client.sessions.get(SESSION)


def test_each_logical_mutation_has_its_own_key_and_reads_none() -> None:
    with (
        ScriptedServer([Reply(201, STORED), Reply(201, STORED), Reply(200, {"id": SESSION})]) as server,
        Client(server.url, "sk_test") as client,
    ):
        client.messages.append(SESSION, role="user", content="one")
        client.messages.append(SESSION, role="user", content="two")
        client.sessions.get(SESSION)
    first, second, read = server.attempts
    assert first.headers["idempotency-key"] != second.headers["idempotency-key"]
    assert "idempotency-key" not in read.headers


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "caf\u00e9"])
def test_it_refuses_an_idempotency_key_the_service_would_refuse(key: str) -> None:
    with Client("http://127.0.0.1:9", "sk_test") as client, pytest.raises(ValueError, match="idempotency key"):
        client.messages.append(SESSION, role="user", content="hi", idempotency_key=key)


def test_a_cancelled_async_mutation_runs_to_its_outcome_before_the_cancellation() -> None:
    """The caller is cancelled while its append is in flight: the request still completes (the
    service's answer is read) and only then is CancelledError raised to the caller."""

    async def scenario(url: str) -> tuple[float, bool]:
        client = AsyncClient(url, "sk_test")
        task = asyncio.create_task(client.messages.append(SESSION, role="user", content="hi"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        waited = time.monotonic() - started
        await client.aclose()
        return waited, server.answered.is_set()

    with ScriptedServer([Reply(201, STORED, delay=0.6)]) as server:
        waited, answered = asyncio.run(scenario(server.url))
    assert answered
    assert waited >= 0.4
    assert len(server.attempts) == 1


def test_a_cancelled_async_read_stops_at_once() -> None:
    async def scenario(url: str) -> float:
        client = AsyncClient(url, "sk_test")
        task = asyncio.create_task(client.sessions.get(SESSION))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    with ScriptedServer([Reply(200, {"id": SESSION}, delay=1.0)]) as server:
        assert asyncio.run(scenario(server.url)) < 0.5


# --- against the live service --------------------------------------------------------------------


@pytest.mark.usefixtures("platform")
def test_a_real_429_from_the_service_is_waited_out(
    platform_server: object, make_user: Callable, make_key: Callable
) -> None:
    """A free-tier key on a server whose free tier allows 4 requests a second: 12 reads in a row
    all succeed, because the client waits out each 429's Retry-After."""
    user = make_user(roles=["user"])
    _, raw = make_key(user, tier="free")
    started = time.monotonic()
    with Client(platform_server.url, raw) as client:  # type: ignore[attr-defined]
        pages = [client.sessions.list() for _ in range(12)]
    assert all(page["count"] == 0 for page in pages)
    assert time.monotonic() - started >= 1.0


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert 25 <= (parse_retry_after(soon) or 0) <= 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past: at once
    assert parse_retry_after("nan") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
