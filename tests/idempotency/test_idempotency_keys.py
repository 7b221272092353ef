"""Idempotency-Key on the session store's mutations: a retry gets the first answer and writes
nothing; the same key on another request is a 422; keys are per owner and pruned after the TTL."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from agent_sessions.models import Message, Session
from audit.models import AuditLog
from idempotency.models import IdempotencyKey

pytestmark = pytest.mark.django_db
URL = "/api/v1/sessions/"


@pytest.fixture
def session(alice) -> Session:
    return Session.objects.create(user=alice.user, agent_id="a", title="t")


def post(client, url: str, body: dict, key: str | None = "key-1"):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(url, body, format="json", **headers)


def test_a_replayed_append_returns_the_first_answer_and_writes_nothing(alice, session):
    url = f"{URL}{session.pk}/messages/batch/"
    body = {"messages": [{"item": {"z": 1.0, "a": "\x00"}}, {"role": "user", "content": "b"}]}
    first = post(alice.client, url, body)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    again = post(alice.client, url, body)
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert json.loads(again.content)["messages"][0]["item"] == {"z": 1.0, "a": "\x00"}
    session.refresh_from_db()
    assert (session.total_messages, session.revision, Message.objects.count()) == (2, 1, 2)
    assert IdempotencyKey.objects.count() == 1


def test_a_replay_after_the_session_changed_still_gets_the_first_answer(alice, session):
    url = f"{URL}{session.pk}/messages/"
    first = post(alice.client, url, {"role": "user", "content": "a", "expected_revision": 0})
    Session.objects.filter(pk=session.pk).update(status=Session.Status.COMPLETED)
    again = post(alice.client, url, {"role": "user", "content": "a", "expected_revision": 0})
    assert again.status_code == 201 and again.content == first.content


def test_the_same_key_with_another_body_or_route_is_a_422(alice, session):
    url = f"{URL}{session.pk}/messages/"
    assert post(alice.client, url, {"role": "user", "content": "a"}).status_code == 201
    other = post(alice.client, url, {"role": "user", "content": "b"})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    elsewhere = post(alice.client, f"{URL}{session.pk}/messages/pop/", {})
    assert elsewhere.status_code == 422
    assert list(Message.objects.values_list("content", flat=True)) == ["a"]


def test_a_pop_replayed_pops_once(alice, session):
    post(
        alice.client,
        f"{URL}{session.pk}/messages/batch/",
        {"messages": [{"role": "user", "content": c} for c in "abc"]},
        key=None,
    )
    first = post(alice.client, f"{URL}{session.pk}/messages/pop/", {"count": 1}, key="pop-1")
    again = post(alice.client, f"{URL}{session.pk}/messages/pop/", {"count": 1}, key="pop-1")
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert list(Message.objects.order_by("sequence").values_list("content", flat=True)) == ["a", "b"]
    assert AuditLog.objects.filter(metadata__operation="pop").count() == 1


def test_a_replayed_create_makes_one_session(alice):
    body = {"agent_id": "a", "title": "t", "external_id": "conv"}
    first = post(alice.client, URL, body)
    again = post(alice.client, URL, body)
    assert first.status_code == again.status_code == 201 and again.content == first.content
    assert Session.objects.count() == 1
    assert AuditLog.objects.filter(resource_type="session", action="CREATE").count() == 1


def test_session_mutations_accept_a_key(alice, session):
    url = f"{URL}{session.pk}/complete/"
    first = post(alice.client, url, {"reason": "done"})
    again = post(alice.client, url, {"reason": "done"})
    assert first.status_code == again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    deleted = alice.client.delete(f"{URL}{session.pk}/", HTTP_IDEMPOTENCY_KEY="del")
    replayed = alice.client.delete(f"{URL}{session.pk}/", HTTP_IDEMPOTENCY_KEY="del")
    assert deleted.status_code == replayed.status_code == 204


def test_a_refusal_is_not_stored(alice, session):
    Session.objects.filter(pk=session.pk).update(status=Session.Status.COMPLETED)
    assert post(alice.client, f"{URL}{session.pk}/messages/", {"role": "user", "content": "a"}).status_code == 409
    assert not IdempotencyKey.objects.exists()


def test_keys_are_per_owner(alice, bob, session):
    bobs = Session.objects.create(user=bob.user, agent_id="a", title="t")
    assert post(alice.client, f"{URL}{session.pk}/messages/", {"role": "user", "content": "a"}).status_code == 201
    assert post(bob.client, f"{URL}{bobs.pk}/messages/", {"role": "user", "content": "a"}).status_code == 201
    assert (
        post(bob.client, f"{URL}{session.pk}/messages/", {"role": "user", "content": "a"}, key="k2").status_code == 404
    )
    assert Message.objects.count() == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\there", "é"])
def test_a_malformed_key_is_a_400(alice, session, key):
    response = alice.client.post(
        f"{URL}{session.pk}/messages/",
        {"role": "user", "content": "a"},
        format="json",
        headers={"Idempotency-Key": key},
    )
    assert response.status_code == 400 and "Idempotency-Key" in response.json()
    assert not Message.objects.exists()


def test_prune_removes_keys_older_than_the_ttl(alice, session, settings):
    for key in ("old", "new"):
        post(alice.client, f"{URL}{session.pk}/messages/", {"role": "user", "content": key}, key=key)
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    out = StringIO()
    call_command("prune_idempotency_keys", "--dry-run", stdout=out)
    assert "1 idempotency key(s)" in out.getvalue() and IdempotencyKey.objects.count() == 2
    call_command("prune_idempotency_keys", "--batch-size", "1", stdout=out)
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    with pytest.raises(CommandError):
        call_command("prune_idempotency_keys", "--older-than", "1")


def test_a_key_claimed_but_not_yet_answered_is_a_409_to_retry(alice, session, monkeypatch):
    import idempotency.api

    url = f"{URL}{session.pk}/messages/"
    assert post(alice.client, url, {"role": "user", "content": "a"}).status_code == 201
    # As between the append statement (which claims the key) and the one recording its answer.
    IdempotencyKey.objects.update(status_code=None, response_body=None)
    monkeypatch.setattr(idempotency.api, "IN_FLIGHT_WAIT_SECONDS", 0.2)
    response = post(alice.client, url, {"role": "user", "content": "a"})
    assert response.status_code == 409 and response.json()["code"] == "idempotency_key_in_flight"
    assert Message.objects.count() == 1
    assert post(alice.client, url, {"role": "user", "content": "other"}).status_code == 422
