"""The audit trail in the admin: each object's History page, and the index's recent actions."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agent_sessions.services import session_create, session_update
from audit.history import HISTORY_PAGE_SIZE, cursor_of, history_page, rows_for
from audit.models import AuditLog
from audit.services import audit_log_record
from config.context import system_actor


def history_url(app_model: str, pk: object) -> str:
    return f"/admin/{app_model}/{pk}/history/"


def add_resource_rows(resource_type: str, resource_id: str, count: int, *, start: datetime) -> None:
    """``count`` UPDATE rows for one object, a second apart, in one statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO audit_logs (id, created_at, updated_at, timestamp, user_id, action, resource_type,
                                    resource_id, request_id, changes)
            SELECT gen_random_uuid(), now(), now(), %s + make_interval(secs => n), NULL, 'UPDATE', %s, %s,
                   gen_random_uuid(), jsonb_build_object('title', jsonb_build_object('old', n - 1, 'new', n))
              FROM generate_series(1, %s) AS n
            """,
            [start, resource_type, resource_id, count],
        )


def test_history_lists_the_objects_audit_rows_with_actor_request_ip_and_diff(root, alice):
    user, client = root
    session = session_create(actor=user, owner=alice.user, agent_id="planner", title="Trip plan")
    session_update(actor=user, session=session, title="Trip to Lisbon")
    # Through the API with alice's key: the row names her key by its hint.
    response = alice.client.patch(f"/api/v1/sessions/{session.pk}/", {"title": "Lisbon, 3 days"}, format="json")
    assert response.status_code == 200
    with system_actor("expire_sessions"):
        audit_log_record(action=AuditLog.Action.EXECUTE, resource_type="session", resource_id=session.pk)

    page = client.get(history_url("agent_sessions/session", session.pk))
    assert page.status_code == 200
    html = page.content.decode()
    rows = re.findall(r'<tr class="history-row">(.*?)</tr>\s*(?=<tr class="history-row">|</tbody>)', html, re.S)
    assert len(rows) == 4
    # Newest first: the system row, the API change, the admin-side change, the creation.
    assert "system:expire_sessions" in rows[0]
    assert "alice@example.com" in rows[1] and alice.key.key_hint in rows[1]
    assert f"/admin/apikeys/apikey/{alice.key.pk}/change/" in rows[1]
    assert "Trip to Lisbon" in rows[1] and "Lisbon, 3 days" in rows[1] and 'class="old"' in rows[1]
    api_row = AuditLog.objects.get(resource_id=str(session.pk), request_path__startswith="/api/")
    assert str(api_row.request_id)[:8] in rows[1] and f"?q={api_row.request_id}" in rows[1]
    assert "127.0.0.1" in rows[1]
    assert "root@example.com" in rows[2] and "Trip plan" in rows[2] and "Trip to Lisbon" in rows[2]
    assert "CREATE" in rows[3] and "planner" in rows[3]
    assert "doesn’t have a change history" not in html and "LogEntry" not in html
    assert alice.raw_key not in html


def test_history_pages_by_keyset_and_stays_cheap_at_100000_rows(root_client: Client, alice):
    pk = str(alice.user.pk)
    add_resource_rows("user", pk, 100_000, start=datetime(2025, 1, 1, tzinfo=UTC))
    url = history_url("accounts/user", pk)
    with CaptureQueriesContext(connection) as first:
        response = root_client.get(url)
    assert response.status_code == 200
    page = response.context["page"]
    shown = [entry.row for entry in response.context["entries"]]
    assert len(shown) == HISTORY_PAGE_SIZE and page.older and page.newer is None
    assert shown == sorted(shown, key=lambda row: (row.timestamp, row.pk), reverse=True)
    # No COUNT, no OFFSET: one bounded statement over audit_logs.
    audit_reads = [q["sql"] for q in first.captured_queries if '"audit_logs"' in q["sql"]]
    assert len(audit_reads) == 1 and f"LIMIT {HISTORY_PAGE_SIZE + 1}" in audit_reads[0]
    assert not [q for q in first.captured_queries if "COUNT(" in q["sql"].upper() or "OFFSET" in q["sql"].upper()]
    # Deep in the trail: the same statement shape, the next rows in order.
    older = root_client.get(url, {"before": page.older})
    next_rows = [entry.row for entry in older.context["entries"]]
    assert next_rows[0].timestamp < shown[-1].timestamp and older.context["page"].newer
    back = root_client.get(url, {"after": older.context["page"].newer})
    assert [entry.row.pk for entry in back.context["entries"]] == [row.pk for row in shown]


def test_history_pages_walk_every_row_exactly_once(alice):
    pk = str(alice.user.pk)
    add_resource_rows("user", pk, 130, start=datetime(2025, 1, 1, tzinfo=UTC))
    rows = rows_for("user", pk)
    seen: list[uuid.UUID] = []
    page = history_page(rows, size=50)
    while True:
        seen += [row.pk for row in page.rows]
        if not page.older:
            break
        page = history_page(rows, before=page.older, size=50)
    assert len(seen) == len(set(seen)) == rows.count()
    assert cursor_of(rows.order_by("timestamp", "pk").first()) == cursor_of(AuditLog.objects.get(pk=seen[-1]))


@pytest.mark.parametrize("cursor", ["nonsense", "12_not-a-uuid", "99999999999999999999999_" + str(uuid.uuid4())])
def test_a_malformed_cursor_is_a_400(root_client: Client, alice, cursor):
    response = root_client.get(history_url("accounts/user", alice.user.pk), {"before": cursor})
    assert response.status_code == 400


def test_history_needs_the_audit_trails_view_permission(make_staff, alice):
    staff, client = make_staff(roles=[])
    staff.user_permissions.add(Permission.objects.get(codename="view_user", content_type__app_label="accounts"))
    assert client.get(f"/admin/accounts/user/{alice.user.pk}/change/").status_code == 200
    assert client.get(history_url("accounts/user", alice.user.pk)).status_code == 403
    _, viewer = make_staff(roles=["viewer"])
    assert viewer.get(history_url("accounts/user", alice.user.pk)).status_code == 200


def test_keys_and_users_have_their_history_too(root_client: Client, alice):
    key_page = root_client.get(history_url("apikeys/apikey", alice.key.pk)).content.decode()
    assert "CREATE" in key_page and alice.key.key_hint in key_page
    user_page = root_client.get(history_url("accounts/user", alice.user.pk)).content.decode()
    assert "CREATE" in user_page and "alice@example.com" in user_page


def test_an_audit_entry_has_no_history_page_of_its_own(root_client: Client, alice):
    row = AuditLog.objects.filter(resource_id=str(alice.user.pk)).first()
    response = root_client.get(f"/admin/audit/auditlog/{row.pk}/history/")
    assert response.status_code == 302 and response["Location"] == f"/admin/audit/auditlog/{row.pk}/change/"
    assert "/history/" not in root_client.get(f"/admin/audit/auditlog/{row.pk}/change/").content.decode()


def test_admin_saves_write_audit_rows_and_no_log_entries(root_client: Client, alice):
    response = root_client.post(
        f"/admin/agent_sessions/session/{session_create(actor=None, owner=alice.user, agent_id='a', title='x').pk}/change/",
        {"title": "renamed", "_save": "Save"},
    )
    assert response.status_code == 302
    assert AuditLog.objects.filter(action="UPDATE", resource_type="session").exists()
    assert not LogEntry.objects.exists()


def test_recent_actions_are_the_staff_members_own_audit_rows(root, alice, bob):
    user, client = root
    session = session_create(actor=user, owner=alice.user, agent_id="planner", title="Mine to show")
    session_create(actor=bob.user, owner=bob.user, agent_id="planner", title="Someone else's")
    html = client.get("/admin/").content.decode()
    box = html[html.index('id="recent-actions-module"') :]
    assert f'href="/admin/agent_sessions/session/{session.pk}/change/"' in box and "Mine to show" in box
    assert "Someone else" not in box and "None available" not in box
    audit_row = AuditLog.objects.get(resource_id=str(session.pk), action="CREATE")
    assert f"/admin/audit/auditlog/{audit_row.pk}/change/" in box


def test_recent_actions_cost_the_same_for_a_staff_member_with_many_rows(root, db):
    user, client = root
    with CaptureQueriesContext(connection) as few:
        client.get("/admin/")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO audit_logs (id, created_at, updated_at, timestamp, user_id, action, resource_type, resource_id)
            SELECT gen_random_uuid(), now(), now(), now() - make_interval(secs => n), %s, 'UPDATE', 'report', n::text
              FROM generate_series(1, 20000) AS n
            """,
            [user.pk],
        )
    with CaptureQueriesContext(connection) as many:
        html = client.get("/admin/").content.decode()
    assert html.count('class="changelink"') + html.count('class="addlink"') + html.count('class="deletelink"') >= 10
    recent = [q["sql"] for q in many.captured_queries if '"audit_logs"."user_id" =' in q["sql"]]
    assert len(recent) == 1 and "LIMIT 10" in recent[0]
    assert len(many.captured_queries) <= len(few.captured_queries) + 1
