"""Input serializers whose fields are cloned from a prototype (config.api.serializers.
PrototypeFieldsMixin) validate exactly as DRF's own deep copies do: the same data, the same errors,
nested lists of serializers included, and each instance owns its fields."""

from __future__ import annotations

import contextlib

import pytest
from rest_framework import serializers

from agent_sessions.serializers import (
    MessageAppendSerializer,
    MessageBatchSerializer,
    MessageClearSerializer,
    MessagePopSerializer,
)
from config.api.serializers import PrototypeFieldsMixin

SERIALIZERS = [MessageAppendSerializer, MessageBatchSerializer, MessagePopSerializer, MessageClearSerializer]


@contextlib.contextmanager
def drfs_own_fields():
    """DRF's get_fields (a deep copy of the declared fields per instance) on every serializer,
    nested ones included, for the time of the block."""
    ours = PrototypeFieldsMixin.get_fields
    PrototypeFieldsMixin.get_fields = serializers.Serializer.get_fields
    try:
        yield
    finally:
        PrototypeFieldsMixin.get_fields = ours


MESSAGE = {"role": "user", "content": "hi"}
PAYLOADS = [
    MESSAGE,
    {**MESSAGE, "tool_calls": [{"name": "f", "args": {"a": 1}}], "metadata": {"k": [1]}, "token_count": 3},
    {"item": '{"type":"message","role":"user","content":"x"}'},
    {**MESSAGE, "expected_revision": 4, "state_delta": {"step": 2}},
    {"messages": [MESSAGE, {**MESSAGE, "role": "assistant", "token_count": 2}], "expected_revision": 0},
    {"count": 3, "expected_revision": 1},
    {},
    {"role": "nobody", "content": 5, "token_count": -1, "tool_calls": "no", "metadata": [1]},
    {"messages": [MESSAGE, {"role": "user"}, "not an object", {**MESSAGE, "tool_calls": [1]}]},
    {"messages": []},
    {"messages": [MESSAGE] * 101},
    {"count": 0, "expected_revision": "1"},
    {**MESSAGE, "kind": "", "state_delta": "x"},
    {"item": "[1]"},
]


def _outcome(serializer: serializers.Serializer) -> tuple[bool, object]:
    valid = serializer.is_valid()
    return valid, dict(serializer.validated_data) if valid else serializer.errors


@pytest.mark.parametrize("serializer_class", SERIALIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("partial", [False, True], ids=["full", "partial"])
def test_every_payload_validates_as_with_drfs_deep_copied_fields(serializer_class, partial):
    outcomes = set()
    for payload in PAYLOADS:
        ours = _outcome(serializer_class(data=payload, partial=partial))
        with drfs_own_fields():
            drf = _outcome(serializer_class(data=payload, partial=partial))
        assert ours == drf, payload
        outcomes.add(ours[0])
    assert outcomes == {True, False}, "valid and invalid payloads both exercised"


def test_each_instance_owns_its_fields_and_nested_fields_see_their_own_root():
    first = MessageBatchSerializer(data={}, context={"who": "first"}, partial=True)
    second = MessageBatchSerializer(data={}, context={"who": "second"})
    messages_a, messages_b = first.fields["messages"], second.fields["messages"]
    assert messages_a is not messages_b and messages_a.child is not messages_b.child
    assert messages_a.parent is first and messages_a.child.parent is messages_a
    role_a, role_b = messages_a.child.fields["role"], messages_b.child.fields["role"]
    assert role_a is not role_b
    assert role_a.root is first and role_b.root is second
    assert role_a.context == {"who": "first"} and role_b.context == {"who": "second"}
    assert first.fields["expected_revision"].root.partial is True and second.partial is False
    tool_calls = MessageAppendSerializer().fields["tool_calls"]
    assert tool_calls.child.parent is tool_calls
    assert tool_calls.child is not MessageAppendSerializer().fields["tool_calls"].child
