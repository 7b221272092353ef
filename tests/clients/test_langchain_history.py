"""``PlatformChatMessageHistory`` under LangChain's ``RunnableWithMessageHistory``, offline: a fake
chat model answers, the live service keeps the history, and ``InMemoryChatMessageHistory`` fed
the same turns is the reference."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.chat_history import BaseChatMessageHistory, InMemoryChatMessageHistory
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from agent_platform_client import AsyncClient, Client
from agent_platform_client.langchain import PlatformChatMessageHistory
from tests.clients.conftest import Platform

# RunnableWithMessageHistory and InMemoryChatMessageHistory are what the issue names; LangChain 1.x
# marks both deprecated in favour of LangGraph, and still ships them.
pytestmark = pytest.mark.filterwarnings("ignore::langchain_core._api.deprecation.LangChainDeprecationWarning")


def _answers() -> list[AIMessage]:
    return [
        AIMessage("Paris.", id="ai-1"),
        AIMessage(
            content=[{"type": "text", "text": "Let me look: caf\u00e9 \u0000 \U0001f600"}],
            id="ai-2",
            tool_calls=[
                {"name": "lookup", "args": {"city": "Paris", "days": 1.0}, "id": "call_1", "type": "tool_call"}
            ],
        ),
        AIMessage("Bye.", id="ai-3", response_metadata={"finish_reason": "stop"}),
    ]


def _with_history(get_history: Callable[[str], BaseChatMessageHistory]) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer briefly."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    return RunnableWithMessageHistory(
        prompt | FakeMessagesListChatModel(responses=_answers()),
        get_history,
        input_messages_key="question",
        history_messages_key="history",
    )


def _converse(chain: RunnableWithMessageHistory, session_id: str) -> list[Any]:
    config: Any = {"configurable": {"session_id": session_id}}
    answers = [chain.invoke({"question": "Capital of France?"}, config=config)]
    answers.append(chain.invoke({"question": "Weather there?"}, config=config))
    answers.append(asyncio.run(chain.ainvoke({"question": "Thanks, bye"}, config=config)))
    return answers


def test_runnable_with_message_history_stores_what_in_memory_history_stores(platform: Platform) -> None:
    memory: dict[str, InMemoryChatMessageHistory] = {}
    expected = _converse(_with_history(lambda sid: memory.setdefault(sid, InMemoryChatMessageHistory())), "chat")

    client = Client(platform.url, platform.key)
    session_id = client.sessions.create("helpdesk", "langchain", idle_expiry=False)["id"]
    answers = _converse(_with_history(lambda sid: PlatformChatMessageHistory(client, sid)), session_id)

    assert answers == expected
    fresh = PlatformChatMessageHistory(Client(platform.url, platform.key), session_id)
    assert fresh.messages == memory["chat"].messages
    assert asyncio.run(fresh.aget_messages()) == memory["chat"].messages
    assert len(fresh.messages) == 6
    stored = client.messages.all(session_id)
    assert [m["kind"] for m in stored] == ["langchain:human", "langchain:ai"] * 3
    assert [m["role"] for m in stored] == ["user", "assistant"] * 3
    assert stored[3]["content"] == "Let me look: caf\u00e9  \U0001f600"  # NUL only in the item
    # One request per add_messages: one revision per turn (question and answer together).
    assert client.sessions.get(session_id)["revision"] == 3


def test_every_message_type_and_the_async_methods_round_trip(platform: Platform) -> None:
    messages = [
        SystemMessage("rules"),
        HumanMessage(content=[{"type": "text", "text": "look"}], name="ann"),
        AIMessage("", tool_calls=[{"name": "lookup", "args": {}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("result \u0000", tool_call_id="c1"),
    ]

    async def scenario() -> None:
        client = AsyncClient(platform.url, platform.key)
        session_id = (await client.sessions.create("helpdesk", "types"))["id"]
        history = PlatformChatMessageHistory(client, session_id)
        await history.aadd_messages(messages)
        assert await history.aget_messages() == messages
        assert history.messages == messages
        await history.aclear()
        assert await history.aget_messages() == []
        history.add_messages(messages[:2])
        history.clear()
        assert history.messages == []
        assert (await client.sessions.get(session_id))["revision"] == 4

    asyncio.run(scenario())
