"""Bob reaching any of alice's objects gets 404, by id, list, filter and cursor, and nothing changes."""

from __future__ import annotations

import pytest

from agent_sessions.models import Message, Session
from apikeys.models import APIKey
from audit.models import AuditLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices_things(alice):
    session = Session.objects.create(user=alice.user, agent_id="a", title="private")
    for i in range(1, 4):
        session.add_message("user", f"secret {i}")
    return {"session": session, "key": alice.key}


def _snapshot() -> tuple:
    return (
        list(
            Session.all_objects.values_list(
                "id", "title", "status", "user_id", "deleted_at", "total_messages", "context"
            )
        ),
        list(APIKey.all_objects.values_list("id", "deleted_at", "expires_at", "name")),
        Message.objects.count(),
        AuditLog.objects.count(),
    )


def _requests(things):
    s, k = things["session"].pk, things["key"].pk
    return [
        ("get", f"/api/v1/sessions/{s}/", None),
        ("patch", f"/api/v1/sessions/{s}/", {"title": "mine now"}),
        ("delete", f"/api/v1/sessions/{s}/", None),
        ("post", f"/api/v1/sessions/{s}/complete/", {}),
        ("post", f"/api/v1/sessions/{s}/fail/", {"error": "x"}),
        ("post", f"/api/v1/sessions/{s}/cancel/", {"reason": "x"}),
        ("get", f"/api/v1/sessions/{s}/messages/", None),
        ("post", f"/api/v1/sessions/{s}/messages/", {"role": "user", "content": "injected"}),
        ("get", f"/api/v1/api-keys/{k}/", None),
        ("delete", f"/api/v1/api-keys/{k}/", None),
        ("post", f"/api/v1/api-keys/{k}/rotate/", {}),
    ]


@pytest.mark.parametrize("index", range(11))
def test_bob_gets_404_for_alices_objects_and_nothing_changes(bob, alices_things, index):
    method, path, body = _requests(alices_things)[index]
    before = _snapshot()

    response = (
        getattr(bob.client, method)(path, body, format="json")
        if body is not None
        else getattr(bob.client, method)(path)
    )

    assert response.status_code == 404, (method, path, response.status_code)
    assert _snapshot() == before


def test_bobs_lists_and_filters_never_show_alices(bob, alice, alices_things):
    assert bob.client.get("/api/v1/sessions/").json()["results"] == []
    assert bob.client.get(f"/api/v1/sessions/?user={alice.user.pk}").json()["results"] == []
    assert bob.client.get("/api/v1/sessions/?search=private").json()["results"] == []
    assert [k["id"] for k in bob.client.get("/api/v1/api-keys/").json()["results"]] == [str(bob.key.pk)]
    assert [k["id"] for k in bob.client.get(f"/api/v1/api-keys/?user={alice.user.pk}").json()["results"]] == []
    assert bob.client.get(f"/api/v1/sessions/stats/?user={alice.user.pk}").status_code == 404


def test_alices_cursor_is_useless_to_bob(alice, bob, alices_things):
    s = alices_things["session"].pk
    page = alice.client.get(f"/api/v1/sessions/{s}/messages/?page_size=1").json()
    assert page["next"]
    response = bob.client.get(page["next"])
    assert response.status_code == 404


def test_admin_sees_everyone(admin, alices_things):
    s = alices_things["session"].pk
    assert admin.client.get(f"/api/v1/sessions/{s}/").status_code == 200
    assert len(admin.client.get(f"/api/v1/sessions/{s}/messages/").json()["results"]) == 3
