"""Bad input gets a 4xx with a JSON body naming the problem, and nothing is written."""

from __future__ import annotations

import json

import pytest

from accounts.models import User
from agent_sessions.models import Message, Session
from apikeys.models import APIKey
from audit.models import AuditLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(alice) -> Session:
    return Session.objects.create(user=alice.user, agent_id="a", title="t")


def _counts() -> tuple[int, ...]:
    return (
        User.all_objects.count(),
        APIKey.all_objects.count(),
        Session.all_objects.count(),
        Message.objects.count(),
        AuditLog.objects.count(),
    )


def _deep(levels: int) -> str:
    return '{"context": ' + '{"a": ' * levels + "1" + "}" * levels + ', "agent_id": "a", "title": "t"}'


BODIES = [
    ("malformed json", "/api/v1/sessions/", '{"agent_id": "a", "title": ', "application/json", 400),
    ("json list", "/api/v1/sessions/", "[1, 2]", "application/json", 400),
    (
        "wrong types",
        "/api/v1/sessions/",
        json.dumps({"agent_id": 5, "title": ["x"], "context": "str"}),
        "application/json",
        400,
    ),
    ("nul in title", "/api/v1/sessions/", json.dumps({"agent_id": "a", "title": "a\x00b"}), "application/json", 400),
    (
        "nul in json key",
        "/api/v1/sessions/",
        json.dumps({"agent_id": "a", "title": "t", "context": {"k\x00": 1}}),
        "application/json",
        400,
    ),
    (
        "nul in nested value",
        "/api/v1/sessions/",
        json.dumps({"agent_id": "a", "title": "t", "metadata": {"k": ["\x00"]}}),
        "application/json",
        400,
    ),
    ("unpaired surrogate", "/api/v1/sessions/", '{"agent_id": "a", "title": "\\ud800"}', "application/json", 400),
    ("NaN", "/api/v1/sessions/", '{"agent_id": "a", "title": "t", "context": {"x": NaN}}', "application/json", 400),
    ("not utf-8", "/api/v1/sessions/", b'{"agent_id": "\xff\xfe", "title": "t"}', "application/json", 400),
    ("deeply nested", "/api/v1/sessions/", _deep(5000), "application/json", 400),
    ("nested past the limit", "/api/v1/sessions/", _deep(40), "application/json", 400),
    ("form encoded", "/api/v1/sessions/", "agent_id=a&title=t", "application/x-www-form-urlencoded", 415),
    ("xml", "/api/v1/sessions/", "<session/>", "application/xml", 415),
    ("unknown scope", "/api/v1/api-keys/", json.dumps({"name": "k", "scopes": ["root"]}), "application/json", 400),
    (
        "unknown tier",
        "/api/v1/api-keys/",
        json.dumps({"name": "k", "rate_limit_tier": "gold"}),
        "application/json",
        400,
    ),
    ("empty key name", "/api/v1/api-keys/", json.dumps({"name": ""}), "application/json", 400),
    ("title too long", "/api/v1/sessions/", json.dumps({"agent_id": "a", "title": "x" * 501}), "application/json", 400),
    (
        "context not an object",
        "/api/v1/sessions/",
        json.dumps({"agent_id": "a", "title": "t", "context": [1]}),
        "application/json",
        400,
    ),
]


@pytest.mark.parametrize(("name", "path", "body", "content_type", "status"), BODIES, ids=[b[0] for b in BODIES])
def test_bad_bodies(alice, name, path, body, content_type, status):
    before = _counts()
    response = alice.client.generic("POST", path, body, content_type=content_type)
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert response.json()
    assert _counts() == before


def test_body_over_the_size_limit_is_413(alice, settings):
    before = _counts()
    body = json.dumps({"agent_id": "a", "title": "t", "context": {"pad": "x" * settings.API_MAX_BODY_BYTES}})
    response = alice.client.generic("POST", "/api/v1/sessions/", body, content_type="application/json")
    assert response.status_code == 413 and "detail" in response.json()
    assert _counts() == before


@pytest.mark.parametrize(
    "body",
    [
        {"role": "wizard", "content": "x"},
        {"role": "user", "content": "x", "token_count": -1},
        {"role": "user", "content": "x", "token_count": "many"},
        {"role": "user", "content": "x", "tool_calls": "call it"},
        {"role": "user", "content": "x", "tool_calls": [1, 2]},
        {"role": "user"},
        {"role": "user", "content": "a\x00b"},
    ],
)
def test_bad_messages(alice, session, body):
    before = _counts()
    response = alice.client.post(f"/api/v1/sessions/{session.pk}/messages/", body, format="json")
    assert response.status_code == 400
    assert set(response.json()) & {"role", "content", "token_count", "tool_calls", "detail"}
    assert _counts() == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sessions/not-a-uuid/",
        "/api/v1/sessions/not-a-uuid/messages/",
        "/api/v1/api-keys/12345/",
        "/api/v1/users/%00/",
        "/api/v1/sessions/%FF%FE/",
        "/api/v1/nothing-here/",
    ],
)
def test_ids_that_are_not_uuids_are_404_json(alice, admin, path):
    response = admin.client.get(path)
    assert response.status_code in (400, 404)
    assert response.json()


@pytest.mark.parametrize(
    "query",
    [
        "?page_size=0",
        "?page_size=-5",
        "?page_size=abc",
        "?page_size=1e3",
        "?page_size=" + "9" * 5000,
        "?page=0",
        "?page=-1",
        "?page=abc",
        "?page=999999",
        "?status=bogus",
        "?agent_id=a%00b",
        "?search=%00",
        "?user=not-a-uuid",
        "?ordering=password",
        "?ordering=-title,created_at",
    ],
)
def test_bad_list_parameters(alice, session, query):
    response = alice.client.get("/api/v1/sessions/" + query)
    assert 400 <= response.status_code < 500, (query, response.status_code)
    assert response.json()


def test_huge_page_size_is_clamped_not_refused(alice, session):
    response = alice.client.get("/api/v1/sessions/?page_size=100000")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "cD1hYmM=", "bz05OTk5OTk5OTk5OTk5OTk5OQ==", "cD0lMDA=", "%00", "cj0xJnA9eHl6"],
)
def test_tampered_cursors_are_400(alice, session, cursor):
    session.add_message("user", "x")
    response = alice.client.get(f"/api/v1/sessions/{session.pk}/messages/?cursor={cursor}")
    assert response.status_code == 400, (cursor, response.content)
    assert "cursor" in response.json()


def test_tampered_audit_cursor_is_400(admin):
    # p=not-a-date
    response = admin.client.get("/api/v1/audit-logs/?cursor=cD1ub3QtYS1kYXRl")
    assert response.status_code == 400 and "cursor" in response.json()


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_REQUEST_ID": "\x00" * 10},
        {"HTTP_USER_AGENT": "agent\x00with nul"},
        {"HTTP_USER_AGENT": "x" * 10_000},
        {"HTTP_X_FORWARDED_FOR": "\x00, not-an-ip"},
        {"HTTP_X_API_KEY": "sk_live_\x00"},
    ],
)
def test_hostile_headers_never_500(alice, session, headers):
    response = alice.client.post("/api/v1/sessions/", {"agent_id": "a", "title": "t"}, format="json", **headers)
    assert response.status_code in (201, 401)
    if response.status_code == 201:
        row = AuditLog.objects.get(resource_id=response.json()["id"])
        assert "\x00" not in (row.user_agent or "") and len(row.user_agent or "") <= 500
