from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agent_sessions.models import Message, Session
from audit.models import AuditLog

pytestmark = pytest.mark.django_db
URL = "/api/v1/sessions/"


@pytest.fixture
def alice_session(alice) -> Session:
    response = alice.client.post(
        URL, {"agent_id": "code-assistant", "title": "Fix the build", "context": {"repo": "x"}}, format="json"
    )
    assert response.status_code == 201, response.json()
    return Session.objects.get(pk=response.json()["id"])


def test_create_and_retrieve(alice, alice_session):
    body = alice.client.get(f"{URL}{alice_session.pk}/").json()
    assert body["title"] == "Fix the build" and body["status"] == "active"
    assert (body["total_messages"], body["total_tokens"]) == (0, 0)
    assert body["last_activity_at"] and body["user"] == str(alice.user.pk)
    row = AuditLog.objects.get(resource_type="session", resource_id=str(alice_session.pk))
    assert (row.action, row.user_id, row.response_status) == ("CREATE", alice.user.pk, 201)


def test_read_only_fields_cannot_be_assigned(alice, bob):
    response = alice.client.post(
        URL,
        {
            "agent_id": "a",
            "title": "t",
            "user": str(bob.user.pk),
            "status": "completed",
            "total_messages": 99,
            "id": "x",
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["user"], body["status"], body["total_messages"]) == (str(alice.user.pk), "active", 0)


def test_title_over_500_characters_is_a_400(alice):
    response = alice.client.post(URL, {"agent_id": "a", "title": "x" * 501}, format="json")
    assert response.status_code == 400 and "title" in response.json()
    assert not Session.objects.exists()


def test_patch_changes_title_and_merges_context_and_metadata(alice, alice_session):
    response = alice.client.patch(
        f"{URL}{alice_session.pk}/",
        {"title": "Fixed", "context": {"branch": "main"}, "metadata": {"k": 1}},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "Fixed"
    assert body["context"] == {"repo": "x", "branch": "main"}
    assert body["metadata"] == {"k": 1}
    row = AuditLog.objects.get(resource_id=str(alice_session.pk), action="UPDATE")
    assert set(row.changes) == {"title", "context", "metadata"}


def test_list_filters_ordering_and_search(alice):
    make = lambda agent, title: alice.client.post(URL, {"agent_id": agent, "title": title}, format="json").json()["id"]  # noqa: E731
    first = make("a1", "Alpha research")
    second = make("a2", "Beta build")
    third = make("a1", "Gamma research")
    alice.client.post(f"{URL}{second}/complete/", {}, format="json")

    def ids(query: str = "") -> list[str]:
        response = alice.client.get(URL + query)
        assert response.status_code == 200, response.json()
        return [s["id"] for s in response.json()["results"]]

    assert ids() == [second, third, first]  # newest activity first (completing touched `second`)
    assert ids("?ordering=last_activity_at") == [first, third, second]
    assert set(ids("?status=completed")) == {second}
    assert set(ids("?agent_id=a1")) == {first, third}
    assert set(ids("?search=RESEARCH")) == {first, third}
    assert alice.client.get(URL + "?page_size=2").json()["count"] == 3
    assert len(ids("?page_size=2")) == 2
    assert ids("?page_size=2&page=2") == [first]


def test_soft_delete(alice, alice_session):
    assert alice.client.delete(f"{URL}{alice_session.pk}/").status_code == 204
    assert alice.client.get(f"{URL}{alice_session.pk}/").status_code == 404
    assert Session.all_objects.get(pk=alice_session.pk).deleted_at is not None


@pytest.mark.parametrize(
    ("verb", "body", "status", "metadata"),
    [
        ("complete", {}, "completed", {}),
        ("fail", {"error": "tool crashed"}, "failed", {"error": "tool crashed"}),
        ("cancel", {"reason": "user left"}, "cancelled", {"cancellation_reason": "user left"}),
    ],
)
def test_lifecycle_and_409_once_finished(alice, alice_session, verb, body, status, metadata):
    response = alice.client.post(f"{URL}{alice_session.pk}/{verb}/", body, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == status
    assert response.json()["metadata"] == metadata
    row = AuditLog.objects.get(resource_id=str(alice_session.pk), action="UPDATE")
    assert row.changes == {"status": {"old": "active", "new": status}}

    again = alice.client.post(f"{URL}{alice_session.pk}/{verb}/", body, format="json")
    assert again.status_code == 409 and "detail" in again.json()
    appended = alice.client.post(f"{URL}{alice_session.pk}/messages/", {"role": "user", "content": "hi"}, format="json")
    assert appended.status_code == 409


def test_messages_append_and_page_in_order(alice, alice_session):
    for i in range(7):
        response = alice.client.post(
            f"{URL}{alice_session.pk}/messages/",
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}", "token_count": 2},
            format="json",
        )
        assert response.status_code == 201
        assert response.json()["sequence"] == i + 1

    page = alice.client.get(f"{URL}{alice_session.pk}/messages/?page_size=3").json()
    seen = [m["content"] for m in page["results"]]
    while page["next"]:
        page = alice.client.get(page["next"]).json()
        seen += [m["content"] for m in page["results"]]
    assert seen == [f"m{i}" for i in range(7)]
    assert alice.client.get(f"{URL}{alice_session.pk}/").json()["total_tokens"] == 14
    assert not AuditLog.objects.filter(resource_type="message").exists()


def test_message_page_size_defaults_to_50_and_caps_at_200(alice, alice_session):
    Message.objects.bulk_create(
        Message(session=alice_session, sequence=i, role="user", content=str(i)) for i in range(1, 251)
    )
    assert len(alice.client.get(f"{URL}{alice_session.pk}/messages/").json()["results"]) == 50
    assert len(alice.client.get(f"{URL}{alice_session.pk}/messages/?page_size=100000").json()["results"]) == 200


def test_appending_to_an_expired_session_is_a_409(alice, alice_session):
    Session.objects.filter(pk=alice_session.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = alice.client.post(f"{URL}{alice_session.pk}/messages/", {"role": "user", "content": "hi"}, format="json")
    assert response.status_code == 409
    assert "expired" in response.json()["detail"]


def test_message_limit_is_a_409_naming_the_limit(alice, alice_session, settings):
    settings.SESSION_MAX_MESSAGES = 1
    ok = alice.client.post(f"{URL}{alice_session.pk}/messages/", {"role": "user", "content": "1"}, format="json")
    assert ok.status_code == 201
    refused = alice.client.post(f"{URL}{alice_session.pk}/messages/", {"role": "user", "content": "2"}, format="json")
    assert refused.status_code == 409
    assert "maximum of 1 messages" in refused.json()["detail"]


def test_content_over_the_limit_is_a_400(alice, alice_session, settings):
    response = alice.client.post(
        f"{URL}{alice_session.pk}/messages/",
        {"role": "user", "content": "x" * (settings.MESSAGE_MAX_CONTENT_CHARS + 1)},
        format="json",
    )
    assert response.status_code == 400 and "content" in response.json()


def test_stats_for_the_caller_and_for_a_user_by_admin(alice, admin, alice_session):
    alice.client.post(
        f"{URL}{alice_session.pk}/messages/", {"role": "user", "content": "x", "token_count": 5}, format="json"
    )
    expected = {
        "total_sessions": 1,
        "active_sessions": 1,
        "total_messages": 1,
        "total_tokens": 5,
        "avg_messages_per_session": 1.0,
    }
    assert alice.client.get(URL + "stats/").json() == expected
    assert admin.client.get(f"{URL}stats/?user={alice.user.pk}").json() == expected
    assert admin.client.get(URL + "stats/").json()["total_sessions"] == 0


def test_transfer_is_admin_only_and_audited(admin, alice, bob, alice_session):
    assert (
        alice.client.post(f"{URL}{alice_session.pk}/transfer/", {"user": str(bob.user.pk)}, format="json").status_code
        == 403
    )

    response = admin.client.post(f"{URL}{alice_session.pk}/transfer/", {"user": str(bob.user.pk)}, format="json")

    assert response.status_code == 200 and response.json()["user"] == str(bob.user.pk)
    assert alice.client.get(f"{URL}{alice_session.pk}/").status_code == 404
    assert bob.client.get(f"{URL}{alice_session.pk}/").status_code == 200
    row = AuditLog.objects.get(resource_id=str(alice_session.pk), action="UPDATE")
    assert row.changes == {"user_id": {"old": str(alice.user.pk), "new": str(bob.user.pk)}}
