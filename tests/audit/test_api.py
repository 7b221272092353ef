from __future__ import annotations

import uuid

import pytest
from django.db import connection

from agent_sessions.models import Session
from audit.models import AuditLog

pytestmark = pytest.mark.django_db
URL = "/api/v1/audit-logs/"


def test_audit_log_is_admin_only(alice, admin):
    assert alice.client.get(URL).status_code == 403
    assert admin.client.get(URL).status_code == 200


def test_each_mutation_writes_exactly_one_row_with_request_context(admin, alice):
    request_id = str(uuid.uuid4())
    response = alice.client.post(
        "/api/v1/sessions/",
        {"agent_id": "a", "title": "t"},
        format="json",
        HTTP_X_REQUEST_ID=request_id,
        HTTP_USER_AGENT="pytest-agent/1.0",
        REMOTE_ADDR="198.51.100.4",
    )
    assert response["X-Request-ID"] == request_id

    rows = admin.client.get(f"{URL}?request_id={request_id}").json()["results"]

    assert len(rows) == 1
    row = rows[0]
    assert row["action"] == "CREATE" and row["resource_type"] == "session"
    assert row["resource_id"] == response.json()["id"] and row["user_id"] == str(alice.user.pk)
    assert (row["ip_address"], row["user_agent"]) == ("198.51.100.4", "pytest-agent/1.0")
    assert (row["request_method"], row["request_path"], row["response_status"]) == ("POST", "/api/v1/sessions/", 201)


def test_malformed_request_ids_are_replaced(alice):
    response = alice.client.get("/api/v1/users/me/", HTTP_X_REQUEST_ID="not-a-uuid\x00")
    assert uuid.UUID(response["X-Request-ID"])


def test_forwarded_for_is_trusted_only_from_a_configured_proxy(alice, admin, settings):
    from config.context import _trusted_networks

    alice.client.post(
        "/api/v1/sessions/", {"agent_id": "a", "title": "1"}, format="json", HTTP_X_FORWARDED_FOR="6.6.6.6"
    )
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    _trusted_networks.cache_clear()
    try:
        alice.client.post(
            "/api/v1/sessions/",
            {"agent_id": "a", "title": "2"},
            format="json",
            HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9",
            REMOTE_ADDR="10.1.2.3",
        )
    finally:
        _trusted_networks.cache_clear()
    ips = dict(
        AuditLog.objects.filter(action="CREATE", resource_type="session").values_list(
            "changes__title__new", "ip_address"
        )
    )
    assert ips == {"1": "127.0.0.1", "2": "203.0.113.9"}


def test_filters_and_newest_first_cursor_pages(admin, alice):
    for i in range(5):
        alice.client.post("/api/v1/sessions/", {"agent_id": "a", "title": str(i)}, format="json")
    page = admin.client.get(f"{URL}?resource_type=session&user_id={alice.user.pk}&action=CREATE&page_size=2").json()
    titles = [r["changes"]["title"]["new"] for r in page["results"]]
    while page["next"]:
        page = admin.client.get(page["next"]).json()
        titles += [r["changes"]["title"]["new"] for r in page["results"]]
    assert titles == ["4", "3", "2", "1", "0"]
    assert "count" not in page


def test_a_rolled_back_change_leaves_no_audit_row(alice):
    session = Session.objects.create(user=alice.user, agent_id="a", title="before")
    # Fault injection in the database: the audit INSERT fails (as a serialization failure would)
    # after the session UPDATE already ran in the same transaction.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END $$;
            CREATE TRIGGER fail_audit BEFORE INSERT ON audit_logs FOR EACH ROW EXECUTE FUNCTION fail_audit();
            """
        )

    response = alice.client.patch(f"/api/v1/sessions/{session.pk}/", {"title": "after"}, format="json")

    assert response.status_code == 503
    assert Session.objects.get(pk=session.pk).title == "before"
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER fail_audit ON audit_logs; DROP FUNCTION fail_audit();")
    assert not AuditLog.objects.filter(resource_id=str(session.pk)).exists()
