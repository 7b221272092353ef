"""The session store agent frameworks plug into: batches, revisions, ?last=N, pop, clear,
external ids and sessions that never idle out."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.core.management import call_command
from django.utils import timezone

from agent_sessions.models import Message, Session
from audit.models import AuditLog

pytestmark = pytest.mark.django_db
URL = "/api/v1/sessions/"


@pytest.fixture
def session(alice) -> Session:
    return Session.objects.create(user=alice.user, agent_id="a", title="t", context={"keep": 1, "n": 0})


def msg(text: str, **extra: object) -> dict:
    return {"role": "user", "content": text, **extra}


def batch(client, session: Session, messages: list[dict], **fields: object):
    return client.post(f"{URL}{session.pk}/messages/batch/", {"messages": messages, **fields}, format="json")


def sequences(session: Session) -> list[tuple[int, str]]:
    return list(Message.objects.filter(session=session).order_by("sequence").values_list("sequence", "content"))


def test_a_batch_is_stored_with_consecutive_sequences_and_one_revision(alice, session):
    first = batch(alice.client, session, [msg("a"), msg("b", token_count=2)])
    assert first.status_code == 201, first.json()
    assert [m["sequence"] for m in first.json()["messages"]] == [1, 2] and first.json()["revision"] == 1
    second = batch(alice.client, session, [msg("c", token_count=3)], state_delta={"n": 1, "new": [1]})
    assert [m["sequence"] for m in second.json()["messages"]] == [3] and second.json()["revision"] == 2
    session.refresh_from_db()
    assert (session.total_messages, session.total_tokens, session.revision) == (3, 5, 2)
    assert session.context == {"keep": 1, "n": 1, "new": [1]}
    assert sequences(session) == [(1, "a"), (2, "b"), (3, "c")]


def test_the_single_append_is_a_batch_of_one_with_the_same_fields(alice, session):
    response = alice.client.post(f"{URL}{session.pk}/messages/", msg("x", state_delta={"n": 5}), format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["sequence"], body["revision"], body["role"], body["content"]) == (1, 1, "user", "x")
    stale = alice.client.post(f"{URL}{session.pk}/messages/", msg("y", expected_revision=0), format="json")
    assert stale.status_code == 409
    assert stale.json() == {"detail": stale.json()["detail"], "code": "revision_mismatch", "revision": 1}
    fresh = alice.client.post(f"{URL}{session.pk}/messages/", msg("y", expected_revision=1), format="json")
    assert fresh.status_code == 201 and fresh.json()["revision"] == 2
    session.refresh_from_db()
    assert session.context["n"] == 5


@pytest.mark.parametrize(
    "messages, fields, status",
    [
        ([msg("ok"), {"role": "wizard", "content": "x"}], {}, 400),
        ([msg("ok"), {"content": "no role"}], {}, 400),
        ([], {}, 400),
        ([msg(str(i)) for i in range(101)], {}, 400),
        ([msg("ok")], {"expected_revision": 7}, 409),
        ([msg("ok")], {"state_delta": [1]}, 400),
    ],
    ids=["bad role", "missing role", "empty", "over 100", "stale revision", "delta not an object"],
)
def test_a_refused_batch_writes_nothing(alice, session, messages, fields, status):
    response = batch(alice.client, session, messages, **fields)
    assert response.status_code == status, response.json()
    session.refresh_from_db()
    assert (session.total_messages, session.revision, session.context) == (0, 0, {"keep": 1, "n": 0})
    assert not Message.objects.exists()


def test_a_batch_past_the_message_limit_writes_nothing(alice, session, settings):
    settings.SESSION_MAX_MESSAGES = 3
    assert batch(alice.client, session, [msg("a"), msg("b")]).status_code == 201
    response = batch(alice.client, session, [msg("c"), msg("d")])
    assert response.status_code == 409 and response.json()["code"] == "message_limit_reached"
    assert sequences(session) == [(1, "a"), (2, "b")]
    assert batch(alice.client, session, [msg("c")]).status_code == 201


def test_an_inactive_session_takes_no_batch(alice, session):
    Session.objects.filter(pk=session.pk).update(status=Session.Status.COMPLETED)
    response = batch(alice.client, session, [msg("a")])
    assert response.status_code == 409 and response.json()["code"] == "session_not_active"


def test_bob_cannot_append_pop_or_clear_alices_session(alice, bob, session):
    batch(alice.client, session, [msg("a")])
    assert batch(bob.client, session, [msg("b")]).status_code == 404
    assert bob.client.post(f"{URL}{session.pk}/messages/pop/", {}, format="json").status_code == 404
    assert bob.client.post(f"{URL}{session.pk}/messages/clear/", {}, format="json").status_code == 404
    assert bob.client.get(f"{URL}{session.pk}/messages/?last=5").status_code == 404
    assert sequences(session) == [(1, "a")]


# --- reads ------------------------------------------------------------------------------------


def test_last_n_is_the_newest_oldest_first_with_a_link_to_older_pages(alice, session):
    batch(alice.client, session, [msg(str(i)) for i in range(1, 8)])
    body = alice.client.get(f"{URL}{session.pk}/messages/?last=3").json()
    assert [m["sequence"] for m in body["results"]] == [5, 6, 7]
    assert body["next"] is None and body["revision"] == 1
    older = alice.client.get(body["previous"]).json()
    assert [m["sequence"] for m in older["results"]] == [2, 3, 4] and older["revision"] == 1
    oldest = alice.client.get(older["previous"]).json()
    assert [m["sequence"] for m in oldest["results"]] == [1] and oldest["previous"] is None
    assert "last=" not in urlparse(body["previous"]).query
    everything = alice.client.get(f"{URL}{session.pk}/messages/?last=1000").json()
    assert len(everything["results"]) == 7 and everything["previous"] is None


def test_every_message_page_carries_the_revision(alice, session):
    assert alice.client.get(f"{URL}{session.pk}/messages/").json()["revision"] == 0
    assert alice.client.get(f"{URL}{session.pk}/messages/?last=5").json() == {
        "next": None,
        "previous": None,
        "results": [],
        "revision": 0,
    }
    batch(alice.client, session, [msg("a")])
    assert alice.client.get(f"{URL}{session.pk}/messages/").json()["revision"] == 1


@pytest.mark.parametrize("value", ["0", "1001", "x", "-1", ""])
def test_last_out_of_range_is_a_400(alice, session, value):
    response = alice.client.get(f"{URL}{session.pk}/messages/?last={value}")
    assert response.status_code == 400 and "last" in response.json()


# --- pop and clear ----------------------------------------------------------------------------


def test_pop_removes_the_newest_and_the_next_append_follows_on(alice, session):
    batch(alice.client, session, [msg("a", token_count=1), msg("b-secret", token_count=2), msg("c", token_count=4)])
    response = alice.client.post(f"{URL}{session.pk}/messages/pop/", {"count": 2}, format="json")
    assert response.status_code == 200
    assert [m["content"] for m in response.json()["messages"]] == ["b-secret", "c"] and response.json()["revision"] == 2
    session.refresh_from_db()
    assert (session.total_messages, session.total_tokens, session.revision) == (1, 1, 2)
    after = alice.client.post(f"{URL}{session.pk}/messages/", msg("d"), format="json").json()
    assert after["sequence"] == 2
    assert sequences(session) == [(1, "a"), (2, "d")]
    row = AuditLog.objects.get(resource_type="session", resource_id=str(session.pk), metadata__operation="pop")
    assert row.metadata["removed"] == 2 and row.metadata["sequences"] == [2, 3]
    assert "b-secret" not in str(row.changes) + str(row.metadata)  # which messages, never what they said


def test_pop_defaults_to_one_and_an_empty_session_pops_nothing(alice, session):
    empty = alice.client.post(f"{URL}{session.pk}/messages/pop/", {}, format="json")
    assert empty.status_code == 200 and empty.json() == {"messages": [], "revision": 0}
    assert not AuditLog.objects.filter(metadata__operation="pop").exists()
    batch(alice.client, session, [msg("a"), msg("b")])
    assert [m["content"] for m in alice.client.post(f"{URL}{session.pk}/messages/pop/").json()["messages"]] == ["b"]


@pytest.mark.parametrize("count", [0, 101, "1", None])
def test_pop_count_out_of_range_is_a_400(alice, session, count):
    response = alice.client.post(f"{URL}{session.pk}/messages/pop/", {"count": count}, format="json")
    assert response.status_code == 400 and "count" in response.json()


def test_clear_removes_everything_and_audits_it(alice, session):
    batch(alice.client, session, [msg("a", token_count=5), msg("b")])
    response = alice.client.post(f"{URL}{session.pk}/messages/clear/", {"expected_revision": 1}, format="json")
    assert response.status_code == 200 and response.json() == {"removed": 2, "revision": 2}
    session.refresh_from_db()
    assert (session.total_messages, session.total_tokens) == (0, 0)
    assert alice.client.post(f"{URL}{session.pk}/messages/", msg("c"), format="json").json()["sequence"] == 1
    row = AuditLog.objects.get(resource_type="session", resource_id=str(session.pk), metadata__operation="clear")
    assert row.metadata["removed"] == 2 and row.user_id == alice.user.pk


def test_pop_and_clear_need_an_active_session_and_the_expected_revision(alice, session):
    batch(alice.client, session, [msg("a")])
    stale = alice.client.post(f"{URL}{session.pk}/messages/pop/", {"expected_revision": 0}, format="json")
    assert stale.status_code == 409 and stale.json()["code"] == "revision_mismatch" and stale.json()["revision"] == 1
    Session.objects.filter(pk=session.pk).update(status=Session.Status.CANCELLED)
    for route in ("pop", "clear"):
        response = alice.client.post(f"{URL}{session.pk}/messages/{route}/", {}, format="json")
        assert response.status_code == 409 and response.json()["code"] == "session_not_active"
    assert sequences(session) == [(1, "a")]


# --- client-chosen identity, long-lived conversations -------------------------------------------


def test_external_id_is_unique_per_owner_and_agent_among_live_sessions(alice, bob):
    first = alice.client.post(URL, {"agent_id": "a", "title": "t", "external_id": "conv-1"}, format="json")
    assert first.status_code == 201 and first.json()["external_id"] == "conv-1"
    again = alice.client.post(URL, {"agent_id": "a", "title": "t", "external_id": "conv-1"}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "session_exists" and again.json()["session_id"] == first.json()["id"]
    assert alice.client.post(URL, {"agent_id": "b", "title": "t", "external_id": "conv-1"}).status_code == 201
    assert bob.client.post(URL, {"agent_id": "a", "title": "t", "external_id": "conv-1"}).status_code == 201
    found = alice.client.get(f"{URL}?external_id=conv-1&agent_id=a").json()
    assert [s["id"] for s in found["results"]] == [first.json()["id"]]
    assert alice.client.delete(f"{URL}{first.json()['id']}/").status_code == 204
    assert alice.client.post(URL, {"agent_id": "a", "title": "t", "external_id": "conv-1"}).status_code == 201


def test_new_session_fields_have_their_defaults(alice):
    body = alice.client.post(URL, {"agent_id": "a", "title": "t"}, format="json").json()
    assert (body["revision"], body["external_id"], body["idle_expiry"]) == (0, None, True)
    bad = alice.client.post(URL, {"agent_id": "a", "title": "t", "idle_expiry": "no", "external_id": ""})
    assert bad.status_code == 400 and {"idle_expiry", "external_id"} <= set(bad.json())


def test_a_session_without_idle_expiry_is_resumed_the_next_day(alice):
    kept = alice.client.post(URL, {"agent_id": "a", "title": "t", "idle_expiry": False}, format="json").json()
    idle = alice.client.post(URL, {"agent_id": "a", "title": "t"}, format="json").json()
    ends = alice.client.post(
        URL,
        {
            "agent_id": "a",
            "title": "t",
            "idle_expiry": False,
            "expires_at": (timezone.now() + timedelta(hours=1)).isoformat(),
        },
        format="json",
    ).json()
    Session.objects.update(last_activity_at=timezone.now() - timedelta(days=2))
    Session.objects.filter(pk=ends["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    call_command("expire_sessions", verbosity=0)
    statuses = dict(Session.objects.values_list("id", "status"))
    assert {str(k): v for k, v in statuses.items()} == {
        kept["id"]: "active",
        idle["id"]: "completed",
        ends["id"]: "completed",
    }
    response = alice.client.post(f"{URL}{kept['id']}/messages/", msg("next day"), format="json")
    assert response.status_code == 201


@pytest.mark.parametrize("route", ["", "batch/", "pop/", "clear/"])
def test_message_routes_answer_options(alice, session, route):
    response = alice.client.options(f"{URL}{session.pk}/messages/{route}")
    assert response.status_code == 200 and "POST" in response["Allow"]
