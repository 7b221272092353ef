"""``PlatformSession`` under the OpenAI Agents SDK's own runner, offline: the SDK's
``ScriptedModel`` plays the model, the live service keeps the conversation, and the SDK's
``SQLiteSession`` fed the same script is the reference for what must come back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.memory import Session, SQLiteSession
from agents.testing import ScriptedModel, assistant_message, function_call
from django.core.management import call_command
from django.utils import timezone
from openai.types.responses.response_reasoning_item import ResponseReasoningItem, Summary

from agent_platform_client import AsyncClient, Client
from agent_platform_client.openai_agents import PlatformSession
from agent_sessions.models import Session as SessionRow
from tests.clients.conftest import Platform
from tests.clients.peers import DroppingProxy, Exchange


@pytest.fixture(autouse=True)
def _offline() -> Iterator[None]:
    # The SDK would otherwise export traces to OpenAI; these tests never leave the machine.
    set_tracing_disabled(True)
    yield


@function_tool
def lookup(city: str) -> str:
    """The weather in a city."""
    # NUL and non-ASCII in a tool output: SQLiteSession stores them, so must the platform.
    return f"Sunny in {city} \u0000 caf\u00e9 \U0001f600"


def _reasoning(item_id: str) -> ResponseReasoningItem:
    return ResponseReasoningItem(
        id=item_id, type="reasoning", summary=[Summary(text="The user wants the weather.", type="summary_text")]
    )


def _script(tag: str = "") -> list[Any]:
    """Four model responses over three turns: text; reasoning + a function call, then text after
    the tool output; text again (the third turn's input has list content)."""
    return [
        [assistant_message(f"Hi{tag}! How can I help?", item_id=f"msg_1{tag}")],
        [_reasoning(f"rs_1{tag}"), function_call("lookup", {"city": f"Paris{tag}"}, call_id=f"call_1{tag}")],
        [assistant_message(f"It is sunny{tag}.", item_id=f"msg_2{tag}")],
        [assistant_message(f"Bye{tag}.", item_id=f"msg_3{tag}")],
    ]


TURN_1 = "Hello"
TURN_2 = "What is the weather in Paris?"
TURN_3: list[Any] = [
    {
        "role": "user",
        "content": [{"type": "input_text", "text": "Thanks!"}, {"type": "input_text", "text": "\u00e0 bient\u00f4t"}],
    }
]


def _agent(model: ScriptedModel) -> Agent:
    return Agent(name="weather", instructions="Answer briefly.", model=model, tools=[lookup])


def _digests(items: list[Any]) -> list[str]:
    # What the SDK compares when it resumes a run (run_internal/session_persistence.py).
    return [hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest() for item in items]


async def _three_turns_async(session: Session, model: ScriptedModel) -> list[str]:
    agent = _agent(model)
    first = await Runner.run(agent, TURN_1, session=session)
    streamed = Runner.run_streamed(agent, TURN_2, session=session)
    async for _event in streamed.stream_events():
        pass
    third = await Runner.run(agent, TURN_3, session=session)
    return [str(first.final_output), str(streamed.final_output), str(third.final_output)]


def _three_turns_mixed(session: Session, model: ScriptedModel) -> list[str]:
    """Runner.run, then run_streamed (each in its own event loop), then run_sync."""
    agent = _agent(model)
    outputs = [str(asyncio.run(Runner.run(agent, TURN_1, session=session)).final_output)]

    async def streamed() -> str:
        result = Runner.run_streamed(agent, TURN_2, session=session)
        async for _event in result.stream_events():
            pass
        return str(result.final_output)

    outputs.append(asyncio.run(streamed()))
    outputs.append(str(Runner.run_sync(agent, TURN_3, session=session).final_output))
    return outputs


class CountingSession(PlatformSession):
    """Records each add_items batch, to check that each is one request and lands contiguous."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[Any]] = []

    async def add_items(self, items: list[Any]) -> None:
        await super().add_items(items)
        if items:
            self.batches.append(json.loads(json.dumps(items)))


def test_three_turns_read_back_exactly_what_sqlite_session_holds(platform: Platform) -> None:
    """run_sync, run_streamed and run over three turns: a fresh PlatformSession on the same id
    reads back the items SQLiteSession holds, equal and with equal digests."""
    reference = SQLiteSession("reference")
    expected_outputs = _three_turns_mixed(reference, ScriptedModel(_script()))
    platform_session = asyncio.run(
        PlatformSession.create(Client(platform.url, platform.key), agent_id="weather", title="three turns")
    )
    assert _three_turns_mixed(platform_session, ScriptedModel(_script())) == expected_outputs
    assert expected_outputs == ["Hi! How can I help?", "It is sunny.", "Bye."]

    async def read_both() -> tuple[list[Any], list[Any]]:
        fresh = PlatformSession(AsyncClient(platform.url, platform.key), platform_session.session_id)
        return await fresh.get_items(), await reference.get_items()

    ours, theirs = asyncio.run(read_both())
    assert [item.get("type") for item in theirs] == [
        None,  # the user's "Hello" (an easy input message)
        "message",
        None,
        "reasoning",
        "function_call",
        "function_call_output",
        "message",
        None,
        "message",
    ]
    assert ours == theirs
    assert _digests(ours) == _digests(theirs)
    assert [json.dumps(item) for item in ours] == [json.dumps(item) for item in theirs]
    assert "\u0000" in next(item["output"] for item in ours if item.get("type") == "function_call_output")


def test_limits_pop_and_clear_behave_as_sqlite_session(platform: Platform) -> None:
    async def scenario() -> None:
        client = AsyncClient(platform.url, platform.key)
        ours = await PlatformSession.create(client, agent_id="weather", title="semantics")
        theirs = SQLiteSession("reference")
        assert await ours.pop_item() is None and await theirs.pop_item() is None
        await ours.add_items([])  # nothing sent
        for session in (ours, theirs):
            await _three_turns_async(session, ScriptedModel(_script()))
        for limit in (None, 1, 2, 5, 9, 50, 0, -1):
            assert await ours.get_items(limit) == await theirs.get_items(limit), limit
        limited_ours = PlatformSession(client, ours.session_id, session_settings={"limit": 3})
        limited_theirs = SQLiteSession("reference-limited", session_settings={"limit": 3})
        await limited_theirs.add_items(await theirs.get_items())
        assert await limited_ours.get_items() == await limited_theirs.get_items()
        assert await limited_ours.get_items(limit=4) == await limited_theirs.get_items(limit=4)
        assert await ours.pop_item() == await theirs.pop_item()
        assert await ours.get_items() == await theirs.get_items()
        await ours.clear_session()
        await theirs.clear_session()
        assert await ours.get_items() == [] == await theirs.get_items()
        assert await ours.pop_item() is None
        await ours.add_items([{"role": "user", "content": "after clear"}])
        assert await ours.get_items() == [{"role": "user", "content": "after clear"}]
        session = await client.sessions.get(ours.session_id)
        assert session["idle_expiry"] is False  # a long-lived conversation

    asyncio.run(scenario())


def test_it_is_an_sdk_session_and_each_add_items_is_one_request(platform: Platform) -> None:
    async def scenario() -> None:
        client = AsyncClient(platform.url, platform.key)
        created = await client.sessions.create("weather", "counting")
        session = CountingSession(client, created["id"])
        assert isinstance(session, Session)
        assert session.session_id == created["id"]
        await _three_turns_async(session, ScriptedModel(_script()))
        revision = (await client.sessions.get(session.session_id))["revision"]
        # Every add_items was one atomic write: one revision each, nothing else wrote.
        assert revision == len(session.batches) >= 4
        assert sum(len(batch) for batch in session.batches) == len(await session.get_items())

    asyncio.run(scenario())


def test_concurrent_runners_on_one_session_keep_each_batch_contiguous(platform: Platform) -> None:
    runners = 4

    async def scenario() -> tuple[list[Any], list[list[Any]]]:
        client = AsyncClient(platform.url, platform.key)
        created = await client.sessions.create("weather", "concurrent", idle_expiry=False)
        sessions = [CountingSession(client, created["id"]) for _ in range(runners)]

        async def run(n: int) -> None:
            agent = _agent(ScriptedModel(_script(f"-r{n}")))
            await Runner.run(agent, f"{TURN_1} from runner {n}", session=sessions[n])
            await Runner.run(agent, f"{TURN_2} (runner {n})", session=sessions[n])

        await asyncio.gather(*(run(n) for n in range(runners)))
        stored = await PlatformSession(client, created["id"]).get_items()
        return stored, [batch for session in sessions for batch in session.batches]

    stored, batches = asyncio.run(scenario())
    assert len(stored) == sum(len(batch) for batch in batches)
    encoded = [json.dumps(item, sort_keys=True) for item in stored]
    for batch in batches:
        want = [json.dumps(item, sort_keys=True) for item in batch]
        start = encoded.index(want[0])
        assert encoded[start : start + len(want)] == want, f"batch split: {want}"
    # The runs really interleaved: some runner's batches are not all adjacent.
    owners = [
        next((f"r{n}" for n in range(runners) if f"-r{n}" in text or f"runner {n}" in text), "?") for text in encoded
    ]
    assert len([i for i in range(1, len(owners)) if owners[i] != owners[i - 1]]) > runners - 1


def test_runners_in_threads_share_one_client_and_keep_batches_contiguous(platform: Platform) -> None:
    """run_sync in three threads at once (three event loops) through one AsyncClient."""
    client = AsyncClient(platform.url, platform.key)
    session_id = Client(platform.url, platform.key).sessions.create("weather", "threads")["id"]
    sessions = [CountingSession(client, session_id) for _ in range(3)]

    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            agent = _agent(ScriptedModel(_script(f"-t{n}")))
            Runner.run_sync(agent, f"{TURN_1} from thread {n}", session=sessions[n])
            Runner.run_sync(agent, f"{TURN_2} (thread {n})", session=sessions[n])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    stored = asyncio.run(PlatformSession(client, session_id).get_items())
    batches = [batch for session in sessions for batch in session.batches]
    # Per runner: each turn's input, then each model response with its tool outputs.
    assert len(batches) == 3 * 5
    encoded = [json.dumps(item, sort_keys=True) for item in stored]
    assert len(encoded) == sum(len(batch) for batch in batches)
    for batch in batches:
        want = [json.dumps(item, sort_keys=True) for item in batch]
        start = encoded.index(want[0])
        assert encoded[start : start + len(want)] == want, f"batch split: {want}"


def test_a_dropped_answer_to_add_items_is_retried_without_a_duplicate(platform: Platform) -> None:
    """Through a real proxy that drops the service's answer to the batch holding the function
    call (after the service committed it): the run completes, and the session holds what
    SQLiteSession holds, nothing twice."""
    port = int(platform.url.rsplit(":", 1)[1])

    def drop_function_call_batch(exchange: Exchange) -> bool:
        first = not any(e.dropped for e in proxy.exchanges)
        return first and exchange.path.endswith("/messages/batch/") and b'"function_call"' in exchange.body

    reference = SQLiteSession("reference")
    asyncio.run(_three_turns_async(reference, ScriptedModel(_script())))
    with DroppingProxy(port, drop_function_call_batch) as proxy:

        async def scenario() -> list[Any]:
            client = AsyncClient(proxy.url, platform.key)
            session = await PlatformSession.create(client, agent_id="weather", title="dropped")
            await _three_turns_async(session, ScriptedModel(_script()))
            return await PlatformSession(AsyncClient(platform.url, platform.key), session.session_id).get_items()

        ours = asyncio.run(scenario())
        dropped = [e for e in proxy.exchanges if e.dropped]
    assert len(dropped) == 1 and dropped[0].status == 201
    replays = [e for e in proxy.exchanges if e.headers.get("idempotency-key") == dropped[0].headers["idempotency-key"]]
    assert len(replays) == 2
    assert replays[1].response_headers().get("idempotent-replayed") == "true"
    theirs = asyncio.run(reference.get_items())
    assert ours == theirs
    assert _digests(ours) == _digests(theirs)


def test_a_conversation_resumes_after_any_idle_time(platform: Platform) -> None:
    """expire_sessions completes a session idle for a day, but not one PlatformSession made:
    a conversation picked up two days later takes its next turn."""

    async def start() -> tuple[str, str]:
        client = AsyncClient(platform.url, platform.key)
        conversation = await PlatformSession.get_or_create(
            client, agent_id="weather", external_id="thread-9", title="t"
        )
        again = await PlatformSession.get_or_create(client, agent_id="weather", external_id="thread-9", title="t")
        assert again.session_id == conversation.session_id
        await Runner.run(_agent(ScriptedModel(_script()[:1])), TURN_1, session=conversation)
        plain = await client.sessions.create("weather", "default idle policy")
        return conversation.session_id, plain["id"]

    conversation_id, plain_id = asyncio.run(start())
    SessionRow.objects.filter(pk__in=[conversation_id, plain_id]).update(
        last_activity_at=timezone.now() - timedelta(days=2)
    )
    call_command("expire_sessions", verbosity=0)
    assert SessionRow.objects.get(pk=plain_id).status == "completed"
    assert SessionRow.objects.get(pk=conversation_id).status == "active"

    async def resume() -> list[Any]:
        session = PlatformSession(AsyncClient(platform.url, platform.key), conversation_id)
        result = await Runner.run(_agent(ScriptedModel(_script()[3:])), TURN_3, session=session)
        assert result.final_output == "Bye."
        return await session.get_items()

    items = asyncio.run(resume())
    assert [item.get("type") for item in items] == [None, "message", None, "message"]
