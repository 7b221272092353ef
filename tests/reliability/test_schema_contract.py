"""What schemathesis found, pinned: the API answers what its schema says, every time.

Each test here is one finding of test_schemathesis.py turned into a plain, deterministic check,
so a regression fails on the spot rather than whenever the fuzzer happens to draw it again.
"""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from accounts.models import User

pytestmark = pytest.mark.django_db

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)


def _operations():
    for path, item in SCHEMA["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield f"{method.upper()} {path}", operation


def test_restoring_a_user_whose_email_was_taken_meanwhile_is_a_409(admin, alice):
    assert admin.client.delete(f"/api/v1/users/{alice.user.pk}/").status_code == 204
    taken = admin.client.post("/api/v1/users/", {"email": "alice@example.com", "name": "New Alice"}, format="json")
    assert taken.status_code == 201

    response = admin.client.post(f"/api/v1/users/{alice.user.pk}/restore/")

    # The request carries no input to blame: a conflict with existing data, not a 400.
    assert response.status_code == 409, response.content
    assert "email" in response.json()["detail"]
    assert User.all_objects.get(pk=alice.user.pk).deleted_at is not None


def test_an_empty_filter_value_means_the_filter_is_left_out(alice, admin):
    for path in ("/api/v1/api-keys/", "/api/v1/sessions/", "/api/v1/sessions/stats/"):
        assert alice.client.get(path + "?user=").json() == alice.client.get(path).json()
    assert admin.client.get("/api/v1/audit-logs/?user_id=").status_code == 200
    for label, operation in _operations():
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and not parameter.get("required"):
                assert parameter.get("allowEmptyValue") is True, (label, parameter["name"])


def test_the_schema_documents_413_on_bodies_and_404_past_the_last_page():
    for label, operation in _operations():
        codes = set(operation["responses"])
        if "415" in codes:
            assert "413" in codes, label
        names = {p["name"] for p in operation.get("parameters", [])}
        if "page" in names:
            assert "404" in codes, label
        assert "503" in codes, label


def test_page_past_the_last_is_a_documented_404(alice):
    response = alice.client.get("/api/v1/sessions/?page=5")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/sessions/", {"agent_id": 5, "title": "t"}, "agent_id"),
        ("/api/v1/sessions/", {"agent_id": "a", "title": 1.5}, "title"),
        ("/api/v1/sessions/", {"agent_id": "\t" + "a" * 255, "title": "t"}, "agent_id"),
        ("/api/v1/api-keys/", {"name": "k", "user": 5}, "user"),
        ("/api/v1/api-keys/", {"name": True}, "name"),
        ("/api/v1/users/", {"email": "x@example.com", "name": "X", "is_active": "yes"}, "is_active"),
        ("/api/v1/users/", {"email": "x@example.com", "name": "X", "is_active": 1}, "is_active"),
    ],
)
def test_json_values_of_the_wrong_type_are_refused_not_coerced(admin, path, body, field):
    before = User.all_objects.count()
    response = admin.client.post(path, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert User.all_objects.count() == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("messages", {"role": "user", "content": "x", "token_count": "5"}, "token_count"),
        ("messages", {"role": "user", "content": 7}, "content"),
        ("rotate", {"grace_period_seconds": "60"}, "grace_period_seconds"),
        ("rotate", {"grace_period_seconds": True}, "grace_period_seconds"),
    ],
)
def test_numbers_and_strings_are_not_coerced_on_appends_and_rotations(alice, path, body, field):
    session = alice.client.post("/api/v1/sessions/", {"agent_id": "a", "title": "t"}, format="json").json()
    url = (
        f"/api/v1/sessions/{session['id']}/messages/"
        if path == "messages"
        else f"/api/v1/api-keys/{alice.key.pk}/rotate/"
    )
    response = alice.client.post(url, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_ordering_says_which_values_exist_and_refuses_others(alice):
    (ordering,) = [p for p in SCHEMA["paths"]["/api/v1/sessions/"]["get"]["parameters"] if p["name"] == "ordering"]
    assert "pattern" in ordering["schema"]
    assert alice.client.get("/api/v1/sessions/?ordering=-created_at,last_activity_at").status_code == 200
    assert alice.client.get("/api/v1/sessions/?ordering=title").status_code == 400


def test_no_schema_description_is_an_implementation_note_inherited_from_a_base_class():
    # A serializer without a docstring of its own was described by its base class's: for the
    # message pop, clear and batch bodies that was PrototypeFieldsMixin's note on field copies.
    descriptions = [
        (name, component.get("description", "")) for name, component in SCHEMA["components"]["schemas"].items()
    ]
    leaked = [name for name, text in descriptions if "bench/" in text or "tests/" in text or "DRF " in text]
    assert not leaked, leaked
    assert dict(descriptions)["MessagePopRequest"] == "Remove the session's newest messages."
