"""The output serializers' fast path (config.api.serializers) writes exactly what DRF writes.

The reference is DRF's own ``Serializer.to_representation`` loop over the serializer's own fields;
the objects come from the database, in the states the API shows (fresh, changed by a service,
revoked, expired, soft-deleted, null timestamps and JSON).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from accounts.models import User
from accounts.serializers import UserOutputSerializer
from agent_sessions.models import Message, Session
from agent_sessions.serializers import MessageOutputSerializer, SessionOutputSerializer
from agent_sessions.services import session_append_message, session_cancel, session_create
from apikeys.models import APIKey
from apikeys.serializers import APIKeyCreatedSerializer, APIKeyOutputSerializer
from apikeys.services import api_key_revoke
from audit.models import AuditLog
from audit.serializers import AuditLogOutputSerializer


def drf_reference(serializer_class: type[serializers.ModelSerializer], instance: object) -> dict:
    return dict(serializers.Serializer.to_representation(serializer_class(), instance))


def assert_same_output(serializer_class: type[serializers.ModelSerializer], instances: list) -> None:
    assert instances
    for instance in instances:
        fast = serializer_class(instance).data
        reference = drf_reference(serializer_class, instance)
        assert dict(fast) == reference
        assert list(fast) == list(reference)  # same field order
        assert JSONRenderer().render(fast) == JSONRenderer().render(reference)
    many = serializer_class(instances, many=True).data
    assert [dict(item) for item in many] == [drf_reference(serializer_class, i) for i in instances]


@pytest.fixture
def sessions(alice) -> list[Session]:
    plain = session_create(actor=None, owner=alice.user, agent_id="a", title="Plain")
    expiring = session_create(
        actor=None,
        owner=alice.user,
        agent_id="b",
        title="Expiring",
        context={"k": [1, 2, {"x": None}]},
        expires_at=timezone.now() + timedelta(hours=1),
    )
    cancelled = session_cancel(
        actor=None, session=session_create(actor=None, owner=alice.user, agent_id="c", title="C")
    )
    return [plain, expiring, cancelled, *Session.objects.order_by("created_at")]


def test_session_output_matches_drf(sessions):
    assert_same_output(SessionOutputSerializer, sessions)


def test_message_output_matches_drf(sessions):
    appended = [
        session_append_message(session_id=sessions[0].pk, role="user", content="hi", token_count=3),
        session_append_message(
            session_id=sessions[0].pk, role="assistant", content="", tool_calls=[{"name": "f", "args": {}}]
        ),
        session_append_message(session_id=sessions[0].pk, item='{"type":"function_call","z":1.0,"a":null}'),
    ]
    assert_same_output(MessageOutputSerializer, [*appended, *Message.objects.order_by("sequence")])


def test_api_key_output_matches_drf(alice, make_key):
    expired, _ = make_key(alice.user, name="old", expires_at=timezone.now() + timedelta(seconds=1))
    APIKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    revoked = api_key_revoke(actor=None, api_key=make_key(alice.user, name="gone")[0])
    keys = [alice.key, revoked, *APIKey.all_objects.order_by("created_at")]
    assert {k.state for k in keys} == {"active", "expired", "revoked"}
    assert_same_output(APIKeyOutputSerializer, keys)
    created = alice.key
    created.key = "sk_live_x"
    assert_same_output(APIKeyCreatedSerializer, [created])  # not a rotation: those attributes are missing
    assert APIKeyCreatedSerializer(created).data["rotated_from"] is None
    created.rotated_from, created.old_key_expires_at = revoked.pk, timezone.now()
    assert_same_output(APIKeyCreatedSerializer, [created])


def test_user_output_matches_drf(alice, make_user):
    oauth = make_user("sso@example.com", provider="azure_ad", provider_user_id="abc", groups=["eng"])
    User.objects.filter(pk=alice.user.pk).update(last_login=timezone.now())
    assert_same_output(UserOutputSerializer, [oauth, *User.all_objects.order_by("created_at")])


def test_audit_output_matches_drf(alice, sessions):
    response = alice.client.post("/api/v1/sessions/", {"agent_id": "x", "title": "Over HTTP"}, format="json")
    assert response.status_code == 201
    rows = list(AuditLog.objects.order_by("timestamp"))
    assert {row.ip_address is None for row in rows} == {True, False}  # service-only rows and request rows
    assert_same_output(AuditLogOutputSerializer, rows)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_a_page_and_an_item_are_written_in_the_zone_active_when_they_are_serialized(sessions, zone):
    from agent_sessions.serializers import MessageOutputSerializer as Serializer
    from config.api.serializers import FrozenListSerializer

    session_append_message(session_id=sessions[0].pk, role="user", content="hi")
    messages = list(Message.objects.order_by("sequence"))
    with timezone.override(zone):
        page = Serializer(messages, many=True)
        assert isinstance(page, FrozenListSerializer)  # the zone looked up once for the page
        assert [dict(item) for item in page.data] == [drf_reference(Serializer, m) for m in messages]
        assert_same_output(SessionOutputSerializer, sessions)
        written = Serializer(messages[0]).data["created_at"]
    assert written.endswith("Z") == (zone == "UTC"), written  # "+05:30" / "-03:30" otherwise
