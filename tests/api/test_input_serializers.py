"""Input serializers whose fields are cloned from a prototype (config.api.serializers.
PrototypeFieldsMixin), or shared by every context-free top-level instance, validate exactly as DRF's
own deep copies do: the same data, the same errors, nested lists of serializers included; an
instance with a context, a partial one or a nested one owns its fields."""

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
    ours, shared = PrototypeFieldsMixin.get_fields, PrototypeFieldsMixin.__dict__["_shared_fields"]
    PrototypeFieldsMixin.get_fields = serializers.Serializer.get_fields
    PrototypeFieldsMixin._shared_fields = classmethod(lambda cls: None)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        PrototypeFieldsMixin.get_fields = ours
        PrototypeFieldsMixin._shared_fields = shared  # type: ignore[method-assign]


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
    tool_calls = MessageAppendSerializer(context={"who": "third"}).fields["tool_calls"]
    assert tool_calls.child.parent is tool_calls
    assert tool_calls.child is not MessageAppendSerializer(context={"who": "third"}).fields["tool_calls"].child


@pytest.mark.parametrize("serializer_class", SERIALIZERS, ids=lambda c: c.__name__)
def test_context_free_top_level_instances_share_fields_bound_once(serializer_class):
    first, second = serializer_class(data={}), serializer_class(data=MESSAGE)
    assert first.fields is second.fields
    field = next(iter(first.fields.values()))
    assert field.root is not first and field.root.partial is False and field.context == {}
    assert serializer_class(data={}, partial=True).fields is not first.fields
    assert serializer_class(data={}, context={"request": None}).fields is not first.fields


def test_validations_interleaved_on_shared_fields_each_answer_as_drf_alone():
    """Valid and invalid payloads in turn through the shared fields: nothing one validation
    leaves behind shows in the next."""
    rounds = [payload for payload in PAYLOADS for _ in range(2)] + PAYLOADS[::-1]
    ours = [_outcome(MessageAppendSerializer(data=payload)) for payload in rounds]
    with drfs_own_fields():
        drf = [_outcome(MessageAppendSerializer(data=payload)) for payload in rounds]
    assert ours == drf
    assert {valid for valid, _ in ours} == {True, False}


class _Owned(PrototypeFieldsMixin):
    owner = serializers.HiddenField(default=serializers.CurrentUserDefault())
    note = serializers.CharField()


class _Plain(PrototypeFieldsMixin):
    note = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())


def test_a_serializer_whose_fields_read_its_context_never_shares_them():
    assert _Owned(data={}).fields is not _Owned(data={}).fields
    assert _Plain(data={}).fields is _Plain(data={}).fields
