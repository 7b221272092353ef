"""Messages that carry an agent framework's item: stored as JSON text, returned exactly."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from agent_sessions.models import Message, Session

pytestmark = pytest.mark.django_db

# What an OpenAI Agents SDK run stores: no role on most items, key order that matters to the
# digest it compares on resume, numbers spelled as Python spells them, NUL in tool output.
ITEMS = [
    {"role": "user", "content": "Weather in Zürich? ☀"},
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}], "content": None},
    {
        "type": "function_call",
        "call_id": "c1",
        "name": "weather",
        "arguments": '{"city": "Z\\u00fcrich"}',
        "id": "fc_1",
    },
    {"type": "function_call_output", "call_id": "c1", "output": "nul\x00inside 22.0°C", "z": 1.0, "a": 1, "m": -0.5},
    {
        "zeta": {"b": [1.5, 2.0, 1e-7, 10**30, True, None]},
        "alpha": "",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "It is 22°C.", "annotations": []}],
    },
]


@pytest.fixture
def session(alice) -> Session:
    return Session.objects.create(user=alice.user, agent_id="a", title="t")


def post_raw(client, url: str, text: str, **headers: str):
    return client.post(url, data=text.encode(), content_type="application/json", **headers)


def test_items_come_back_with_identical_json_dumps(alice, session):
    url = f"/api/v1/sessions/{session.pk}/messages/batch/"
    response = post_raw(alice.client, url, json.dumps({"messages": [{"item": item} for item in ITEMS]}))
    assert response.status_code == 201, response.content
    created = json.loads(response.content)["messages"]
    listed = json.loads(alice.client.get(f"/api/v1/sessions/{session.pk}/messages/").content)["results"]
    for sent, got, read in zip(ITEMS, created, listed, strict=True):
        assert got["item"] == sent and read["item"] == sent
        assert json.dumps(got["item"]) == json.dumps(sent)
        assert json.dumps(read["item"], sort_keys=True) == json.dumps(sent, sort_keys=True)
        assert json.dumps(read["item"]) == json.dumps(sent)
        assert list(read["item"]) == list(sent)


def test_number_spelling_and_key_order_are_kept_byte_for_byte(alice, session):
    item_text = (
        '{"z":1.0,"a":1,"e":1e2,"E":-2.50E-3,"big":123456789012345678901234567890,"n":null,"s":"\\u0000\\u00e9"}'
    )
    response = post_raw(
        alice.client, f"/api/v1/sessions/{session.pk}/messages/", '{"kind": "custom", "item": ' + item_text + "}"
    )
    assert response.status_code == 201, response.content
    assert item_text.replace("\\u00e9", "é").encode() in response.content
    assert Message.objects.get().item == item_text.replace("\\u00e9", "é")
    page = alice.client.get(f"/api/v1/sessions/{session.pk}/messages/").content
    assert item_text.replace("\\u00e9", "é").encode() in page
    assert json.loads(response.content)["kind"] == "custom"


def test_role_content_and_kind_are_projected_from_the_item(alice, session):
    url = f"/api/v1/sessions/{session.pk}/messages/batch/"
    response = alice.client.post(url, {"messages": [{"item": item} for item in ITEMS]}, format="json")
    assert response.status_code == 201
    got = [(m["role"], m["content"], m["kind"]) for m in response.json()["messages"]]
    assert got == [
        ("user", "Weather in Zürich? ☀", "message"),
        ("assistant", "think", "reasoning"),
        ("assistant", "", "function_call"),
        ("tool", "nulinside 22.0°C", "function_call_output"),  # the item keeps the NUL; content cannot
        ("assistant", "It is 22°C.", "message"),
    ]


def test_explicit_role_content_and_kind_win_over_the_projection(alice, session):
    response = alice.client.post(
        f"/api/v1/sessions/{session.pk}/messages/",
        {"role": "system", "content": "shown", "kind": "langchain:system", "item": {"role": "user", "content": "x"}},
        format="json",
    )
    body = response.json()
    assert (body["role"], body["content"], body["kind"], body["item"]) == (
        "system",
        "shown",
        "langchain:system",
        {"role": "user", "content": "x"},
    )


def test_a_plain_message_still_needs_role_and_content(alice, session):
    response = alice.client.post(f"/api/v1/sessions/{session.pk}/messages/", {"content": "x"}, format="json")
    assert response.status_code == 400 and "role" in response.json()
    response = alice.client.post(f"/api/v1/sessions/{session.pk}/messages/", {"role": "user"}, format="json")
    assert response.status_code == 400 and "content" in response.json()
    plain = alice.client.post(f"/api/v1/sessions/{session.pk}/messages/", {"role": "user", "content": "x"}).json()
    assert (plain["kind"], plain["item"]) == ("message", None)


@pytest.mark.parametrize(
    "text",
    [
        '{"item": {"s": "\\ud800"}}',  # a lone surrogate
        '{"item": {"n": NaN}}',
        '{"item": {"n": Infinity}}',
        '{"item": {"n": 1e400}}',  # a float that is infinite
        '{"item": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}",  # past the depth limit
        '{"item": [1, 2]}',  # not an object
        '{"item": {"a": 1}, "metadata": {"s": "\\u0000"}}',  # NUL outside the item: jsonb
        '{"item": {"a": 1}, "kind": ""}',
    ],
)
def test_bad_items_are_a_400_and_store_nothing(alice, session, text):
    response = post_raw(alice.client, f"/api/v1/sessions/{session.pk}/messages/", text)
    assert response.status_code == 400, response.content
    assert not Message.objects.exists()


def test_an_item_over_the_limit_is_a_400(alice, session):
    item = {"output": "x" * settings.MESSAGE_MAX_ITEM_BYTES}
    response = alice.client.post(f"/api/v1/sessions/{session.pk}/messages/", {"item": item}, format="json")
    assert response.status_code == 400 and "item" in response.json()
    fits = {"output": "x" * (settings.MESSAGE_MAX_ITEM_BYTES - 100)}
    response = alice.client.post(f"/api/v1/sessions/{session.pk}/messages/", {"item": fits}, format="json")
    assert response.status_code == 201


def test_the_body_limit_is_four_mib_by_default():
    assert settings.API_MAX_BODY_BYTES == 4 * 1024 * 1024
    assert settings.MESSAGE_MAX_ITEM_BYTES == 512 * 1024


def test_an_item_type_text_cannot_hold_is_kind_message(alice, session):
    response = alice.client.post(
        f"/api/v1/sessions/{session.pk}/messages/", {"item": {"type": "a\x00b", "role": "nobody"}}, format="json"
    )
    assert response.status_code == 201
    assert (response.json()["kind"], response.json()["role"]) == ("message", "assistant")
    assert response.json()["item"] == {"type": "a\x00b", "role": "nobody"}
