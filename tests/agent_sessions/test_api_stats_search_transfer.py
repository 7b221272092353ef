"""Sessions beyond CRUD: stats, title search, transfer between owners, the message limit."""

from __future__ import annotations

import uuid

import pytest

from accounts.services import user_soft_delete
from agent_sessions.models import Message, Session
from audit.models import AuditLog

pytestmark = pytest.mark.django_db
URL = "/api/v1/sessions/"


def _create(actor, title: str = "t", agent_id: str = "agent") -> str:
    response = actor.client.post(URL, {"agent_id": agent_id, "title": title}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def _append(actor, session_id: str, *tokens: int) -> None:
    for count in tokens:
        response = actor.client.post(
            f"{URL}{session_id}/messages/", {"role": "user", "content": "x", "token_count": count}, format="json"
        )
        assert response.status_code == 201, response.json()


def _post(actor, path: str, body: dict | None = None) -> int:
    return actor.client.post(path, body or {}, format="json").status_code


def test_stats_match_hand_counted_data_across_users_statuses_and_deletions(alice, bob, admin):
    s1 = _create(alice)
    _append(alice, s1, 10, 20, 5)
    s2 = _create(alice)
    _append(alice, s2, 7)
    assert _post(alice, f"{URL}{s2}/complete/") == 200
    s3 = _create(alice)
    assert _post(alice, f"{URL}{s3}/fail/", {"error": "boom"}) == 200
    s4 = _create(alice)
    _append(alice, s4, 1, 1)
    assert _post(alice, f"{URL}{s4}/cancel/") == 200
    s5 = _create(alice)
    _append(alice, s5, 100, 100, 100, 100)
    assert alice.client.delete(f"{URL}{s5}/").status_code == 204  # deleted: not counted
    _create(alice)  # active, empty
    b1 = _create(bob)
    _append(bob, b1, 3, 4)
    b2 = _create(bob)
    assert _post(bob, f"{URL}{b2}/complete/") == 200

    # alice: s1, s2, s3, s4 and the empty one; s1 and the empty one active; 3+1+2 messages.
    alice_stats = {
        "total_sessions": 5,
        "active_sessions": 2,
        "total_messages": 6,
        "total_tokens": 44,
        "avg_messages_per_session": 1.2,
    }
    bob_stats = {
        "total_sessions": 2,
        "active_sessions": 1,
        "total_messages": 2,
        "total_tokens": 7,
        "avg_messages_per_session": 1.0,
    }
    assert alice.client.get(f"{URL}stats/").json() == alice_stats
    assert bob.client.get(f"{URL}stats/").json() == bob_stats
    assert admin.client.get(f"{URL}stats/?user={alice.user.pk}").json() == alice_stats
    assert admin.client.get(f"{URL}stats/?user={bob.user.pk}").json() == bob_stats
    assert admin.client.get(f"{URL}stats/").json() == {
        "total_sessions": 0,
        "active_sessions": 0,
        "total_messages": 0,
        "total_tokens": 0,
        "avg_messages_per_session": 0.0,
    }


def test_another_users_stats_are_for_admins_only(alice, bob, admin):
    _create(alice)
    assert bob.client.get(f"{URL}stats/?user={alice.user.pk}").status_code == 404
    assert bob.client.get(f"{URL}stats/?user=not-a-uuid").status_code == 400
    assert admin.client.get(f"{URL}stats/?user={uuid.uuid4()}").status_code == 404


def test_search_is_case_insensitive_on_the_title_and_stays_within_the_owner(alice, bob):
    mine = _create(alice, "Quarterly PLANNING notes")
    _create(alice, "Something else")
    _create(bob, "planning for bob")

    results = alice.client.get(f"{URL}?search=planning").json()["results"]

    assert [s["id"] for s in results] == [mine]


def test_transfer_moves_the_session_with_its_messages_and_the_old_owner_loses_access(alice, bob, admin):
    session_id = _create(alice, "handover")
    _append(alice, session_id, 1, 2)

    response = admin.client.post(f"{URL}{session_id}/transfer/", {"user": str(bob.user.pk)}, format="json")
    assert response.status_code == 200

    detail = f"{URL}{session_id}/"
    assert alice.client.get(detail).status_code == 404
    assert alice.client.get(f"{detail}messages/").status_code == 404
    assert _post(alice, f"{detail}messages/", {"role": "user", "content": "still mine?"}) == 404
    assert alice.client.patch(detail, {"title": "mine"}, format="json").status_code == 404
    assert _post(alice, f"{detail}complete/") == 404
    assert alice.client.delete(detail).status_code == 404
    assert alice.client.get(URL).json()["count"] == 0
    assert alice.client.get(f"{URL}stats/").json()["total_sessions"] == 0

    assert bob.client.get(detail).json()["title"] == "handover"
    assert [m["sequence"] for m in bob.client.get(f"{detail}messages/").json()["results"]] == [1, 2]
    assert (
        bob.client.post(f"{detail}messages/", {"role": "user", "content": "hi"}, format="json").json()["sequence"] == 3
    )
    assert bob.client.get(f"{URL}stats/").json()["total_messages"] == 3
    session = Session.objects.get(pk=session_id)
    assert session.user_id == bob.user.pk and session.title == "handover"
    (row,) = AuditLog.objects.for_resource("session", session_id).filter(metadata__operation="transfer")
    assert row.user_id == admin.user.pk
    assert row.changes == {"user_id": {"old": str(alice.user.pk), "new": str(bob.user.pk)}}


def test_transfer_to_a_deleted_unknown_or_same_owner_changes_nothing(alice, bob, admin):
    session_id = _create(alice)
    user_soft_delete(actor=None, user=bob.user)

    assert _post(admin, f"{URL}{session_id}/transfer/", {"user": str(bob.user.pk)}) == 404
    assert _post(admin, f"{URL}{session_id}/transfer/", {"user": str(uuid.uuid4())}) == 404
    assert _post(admin, f"{URL}{session_id}/transfer/", {"user": str(alice.user.pk)}) == 400
    assert _post(alice, f"{URL}{session_id}/transfer/", {"user": str(admin.user.pk)}) == 403

    assert Session.objects.get(pk=session_id).user_id == alice.user.pk
    assert not AuditLog.objects.for_resource("session", session_id).filter(metadata__operation="transfer").exists()


def test_the_message_after_the_limit_is_a_409_naming_it_and_writes_nothing(alice, settings):
    settings.SESSION_MAX_MESSAGES = 3
    session_id = _create(alice)
    _append(alice, session_id, 1, 1, 1)

    response = alice.client.post(
        f"{URL}{session_id}/messages/", {"role": "user", "content": "one too many"}, format="json"
    )

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "message_limit_reached"
    assert "maximum of 3 messages" in body["detail"] and "SESSION_MAX_MESSAGES" in body["detail"]
    session = Session.objects.get(pk=session_id)
    assert (session.total_messages, session.total_tokens) == (3, 3)
    assert list(Message.objects.filter(session_id=session_id).values_list("sequence", flat=True)) == [1, 2, 3]
