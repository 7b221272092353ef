"""Bob against every one of alice's objects, through every operation the API documents.

The matrix comes from the OpenAPI schema itself, so a new endpoint joins it (and fails until it
is classified below). For each operation on an object: bob gets 404 on alice's own things and
403 on the admin-only ones, exactly as for an id that does not exist (no oracle), and nothing in
the database changes. The owner's identical request then succeeds, which proves bob's request was
well formed and reached a real object.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from accounts.models import User
from agent_sessions.models import Message, Session
from apikeys.models import APIKey
from audit.models import AuditLog

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OBJECT_OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in SCHEMA["paths"].items()
    for method in item
    if method in METHODS and "{" in path
)
LIST_OPERATIONS = sorted(f"GET {path}" for path, item in SCHEMA["paths"].items() if "get" in item and "{" not in path)

# Operations only a platform admin may call at all: anyone else gets 403 whatever the id.
ADMIN_ONLY = re.compile(r"^[A-Z]+ /api/v1/(users/\{id\}|audit-logs/|sessions/\{id\}/transfer/)")

# A body that would succeed for the owner.
BODIES: dict[str, Any] = {
    "PATCH /api/v1/sessions/{id}/": {"title": "mine now", "metadata": {"owner": "bob"}},
    "POST /api/v1/sessions/{id}/complete/": {"reason": "bob says so"},
    "POST /api/v1/sessions/{id}/fail/": {"error": "bob says so"},
    "POST /api/v1/sessions/{id}/cancel/": {"reason": "bob says so"},
    "POST /api/v1/sessions/{id}/transfer/": "bob",  # filled in: {"user": bob's id}
    "POST /api/v1/sessions/{session_pk}/messages/": {"role": "user", "content": "injected"},
    "POST /api/v1/sessions/{session_pk}/messages/batch/": {"messages": [{"item": {"type": "injected"}}]},
    "POST /api/v1/sessions/{session_pk}/messages/pop/": {"count": 3},
    "POST /api/v1/sessions/{session_pk}/messages/clear/": {},
    "POST /api/v1/api-keys/{id}/rotate/": {"grace_period_seconds": 60},
    "PATCH /api/v1/users/{id}/": {"name": "Mallory", "roles": ["admin"]},
    "POST /api/v1/users/{id}/restore/": None,
}


@pytest.fixture
def alices(alice, bob) -> dict[str, Any]:
    session = Session.objects.create(user=alice.user, agent_id="a", title="private", context={"secret": 1})
    for i in range(3):
        session.add_message("user", f"secret {i}")
    audit_row = AuditLog.objects.filter(resource_type="api_key", resource_id=str(alice.key.pk)).first()
    assert audit_row is not None
    return {"session": session, "key": alice.key, "user": alice.user, "audit": audit_row, "bob": bob.user}


def _target(label: str, things: dict[str, Any], *, missing: bool = False) -> str:
    """The operation's path with alice's object (or an id that exists nowhere) filled in."""
    path = label.split(" ", 1)[1]
    if path.startswith("/api/v1/sessions/"):
        thing = things["session"]
    elif path.startswith("/api/v1/api-keys/"):
        thing = things["key"]
    elif path.startswith("/api/v1/users/"):
        thing = things["user"]
    elif path.startswith("/api/v1/audit-logs/"):
        thing = things["audit"]
    else:
        raise AssertionError(f"{label} is a new kind of object: say whose it is in _target()")
    value = uuid.uuid4() if missing else thing.pk
    return re.sub(r"\{[a-z_]+\}", str(value), path, count=1)


def _body(label: str, things: dict[str, Any]) -> Any:
    if label.split(" ", 1)[0] in ("GET", "DELETE"):
        return None
    assert label in BODIES, f"{label} takes a body: add one that would succeed for the owner to BODIES"
    body = BODIES[label]
    return {"user": str(things["bob"].pk)} if body == "bob" else body


def _snapshot(things: dict[str, Any]) -> tuple:
    alice = things["user"]
    return (
        list(User.all_objects.filter(pk=alice.pk).values()),
        list(APIKey.all_objects.filter(user=alice).order_by("pk").values()),
        list(Session.all_objects.filter(user=alice).order_by("pk").values()),
        list(Message.objects.filter(session__user=alice).order_by("pk").values()),
        User.all_objects.count(),
        APIKey.all_objects.count(),
        Session.all_objects.count(),
        AuditLog.objects.count(),
    )


def _call(client, method: str, path: str, body: Any):
    if body is None:
        return getattr(client, method.lower())(path)
    return getattr(client, method.lower())(path, body, format="json")


def test_the_matrix_covers_every_operation_on_an_object():
    # 17 when this was written; a generator that lost paths would shrink it.
    assert len(OBJECT_OPERATIONS) >= 17, OBJECT_OPERATIONS


@pytest.mark.parametrize("label", OBJECT_OPERATIONS)
def test_bob_cannot_reach_alices_object_and_changes_nothing(label, alice, bob, admin, alices):
    method = label.split(" ", 1)[0]
    body = _body(label, alices)
    before = _snapshot(alices)

    response = _call(bob.client, method, _target(label, alices), body)
    nowhere = _call(bob.client, method, _target(label, alices, missing=True), body)

    expected = 403 if ADMIN_ONLY.match(label) else 404
    assert response.status_code == expected, (label, response.status_code, response.content[:300])
    # Alice's object and an object that does not exist look the same to bob.
    assert (nowhere.status_code, nowhere.json()) == (response.status_code, response.json())
    assert _snapshot(alices) == before

    # The owner's identical request works: bob's was well formed and aimed at a real object.
    owner = admin if ADMIN_ONLY.match(label) else alice
    control = _call(owner.client, method, _target(label, alices), body)
    assert control.status_code not in (403, 404), (label, control.status_code, control.content[:300])
    assert control.status_code < 500


@pytest.mark.parametrize("label", LIST_OPERATIONS)
def test_bobs_lists_filtered_on_alice_show_nothing_of_hers(label, alice, bob, alices):
    path = label.split(" ", 1)[1]
    alice_ids = {str(alices["user"].pk), str(alices["session"].pk), str(alices["key"].pk), alice.user.email}
    for query in ("", f"?user={alice.user.pk}", f"?user_id={alice.user.pk}", "?search=private", "?deleted=true"):
        response = bob.client.get(path + query)
        assert response.status_code in (200, 400, 403, 404), (label, query, response.status_code)
        text = response.content.decode()
        leaked = {value for value in alice_ids if value in text}
        assert not leaked, (label, query, leaked)
