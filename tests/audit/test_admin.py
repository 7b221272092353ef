"""The audit admin: read-only for everyone, newest first, and no full COUNT on a big table."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audit.models import AuditLog
from audit.services import audit_log_record
from config.admin.pagination import EstimatedCountPaginator

LIST = "/admin/audit/auditlog/"


def add_rows(count: int, *, start: datetime, step_seconds: float = 60) -> None:
    """``count`` audit rows in one statement, ``step_seconds`` apart from ``start`` on."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO audit_logs (id, created_at, updated_at, timestamp, user_id, action, resource_type,
                                    resource_id, request_id)
            SELECT gen_random_uuid(), now(), now(), %s + make_interval(secs => (n - 1) * %s), gen_random_uuid(),
                   (ARRAY['CREATE','UPDATE','DELETE','READ'])[1 + n %% 4],
                   (ARRAY['user','api_key','session'])[1 + n %% 3],
                   gen_random_uuid()::text, gen_random_uuid()
              FROM generate_series(1, %s) AS n
            """,
            [start, step_seconds, count],
        )


def unbounded_counts(queries: list[dict[str, str]]) -> list[str]:
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and " LIMIT " not in q["sql"].upper()]


def test_the_audit_log_is_read_only_even_for_superusers(root_client: Client, alice):
    row = AuditLog.objects.filter(resource_id=str(alice.user.pk)).first()
    assert root_client.get(f"{LIST}add/").status_code == 403
    assert root_client.post(f"{LIST}add/", {"action": "CREATE", "resource_type": "x"}).status_code == 403
    assert root_client.post(f"{LIST}{row.pk}/change/", {"action": "DELETE", "_save": "Save"}).status_code == 403
    assert root_client.get(f"{LIST}{row.pk}/delete/").status_code == 403
    assert root_client.post(f"{LIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    view = root_client.get(f"{LIST}{row.pk}/change/")
    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    assert "Add audit log entry" not in root_client.get(LIST).content.decode()
    row.refresh_from_db()
    assert row.action == "CREATE"


def test_the_entry_page_shows_changes_and_the_request(root_client: Client, alice):
    row = AuditLog.objects.get(resource_type="user", resource_id=str(alice.user.pk), action="CREATE")
    html = root_client.get(f"{LIST}{row.pk}/change/").content.decode()
    assert "alice@example.com" in html and "json-document" in html
    assert f"/admin/accounts/user/{alice.user.pk}/change/" in html


def test_newest_first(root_client: Client, db):
    add_rows(5, start=datetime(2026, 1, 1, tzinfo=UTC), step_seconds=3600)
    response = root_client.get(LIST)
    stamps = [row.timestamp for row in response.context["cl"].result_list]
    assert len(stamps) >= 5 and stamps == sorted(stamps, reverse=True)


def test_filters_by_action_resource_type_and_date(root_client: Client, alice, bob):
    bob_row = AuditLog.objects.get(resource_type="user", resource_id=str(bob.user.pk))
    audit_log_record(action="EXECUTE", resource_type="report", resource_id="r-1")
    by_action = root_client.get(LIST, {"action__exact": "EXECUTE"}).content.decode()
    assert "r-1" in by_action and str(bob.user.pk) not in by_action
    types = root_client.get(LIST).content.decode()
    assert "?resource_type=report" in types and "?resource_type=api_key" in types
    by_type = root_client.get(LIST, {"resource_type": "report"}).content.decode()
    assert "r-1" in by_type and str(bob.user.pk) not in by_type
    midnight = bob_row.timestamp.replace(hour=0, minute=0, second=0, microsecond=0)
    today = root_client.get(
        LIST, {"timestamp__gte": str(midnight), "timestamp__lt": str(midnight + timedelta(days=1))}
    ).content.decode()
    assert str(bob.user.pk) in today


def test_search_by_resource_id_user_id_and_request_id(root_client: Client, alice, bob):
    request_id = uuid.uuid4()
    AuditLog.objects.create(
        timestamp=datetime.now(UTC),
        action="READ",
        resource_type="report",
        resource_id="rep-42",
        user_id=bob.user.pk,
        request_id=request_id,
    )
    assert "rep-42" in root_client.get(LIST, {"q": "rep-42"}).content.decode()
    by_user = root_client.get(LIST, {"q": str(bob.user.pk)}).content.decode()
    assert "rep-42" in by_user
    by_request = root_client.get(LIST, {"q": str(request_id).upper()}).content.decode()
    assert "rep-42" in by_request and "1 entry" in by_request
    by_resource = root_client.get(LIST, {"q": str(alice.user.pk)}).content.decode()
    assert "rep-42" not in by_resource and str(alice.user.pk) in by_resource


def test_the_change_list_never_counts_the_whole_table(root_client: Client, db, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_limit", 50)
    add_rows(300, start=datetime(2025, 6, 1, tzinfo=UTC), step_seconds=86400 * 3)
    for params in (
        {},
        {"action__exact": "CREATE"},
        {"timestamp__year": "2025"},
        {"timestamp__year": "2025", "timestamp__month": "7"},
    ):
        with CaptureQueriesContext(connection) as captured:
            response = root_client.get(LIST, params)
        assert response.status_code == 200
        assert unbounded_counts(captured.captured_queries) == [], params
        sql = " ".join(q["sql"].upper() for q in captured.captured_queries)
        assert "SELECT DISTINCT" not in sql and "DATE_TRUNC" not in sql, params
        assert len(captured.captured_queries) <= 12, [q["sql"][:120] for q in captured.captured_queries]
    html = root_client.get(LIST).content.decode()
    assert re.search(r"about \d+ entries", html)  # past the exact limit: an estimate


def test_the_date_hierarchy_drills_down_by_probing(root_client: Client, db):
    add_rows(3, start=datetime(2024, 3, 10, tzinfo=UTC), step_seconds=86400 * 200)
    # rows on 2024-03-10, 2024-09-26 (+200 days) and 2025-04-14 (+400 days), and today's
    years = root_client.get(LIST).content.decode()
    assert "?timestamp__year=2024" in years and "?timestamp__year=2025" in years
    assert "?timestamp__year=2023" not in years
    months = root_client.get(LIST, {"timestamp__year": "2024"}).content.decode()
    assert "timestamp__month=3" in months and "timestamp__month=9" in months and "timestamp__month=4" not in months
    days = root_client.get(LIST, {"timestamp__year": "2024", "timestamp__month": "3"}).content.decode()
    assert "timestamp__day=10" in days and "timestamp__day=11" not in days


@pytest.mark.slow
def test_a_million_rows_list_stays_fast(root_client: Client, db):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")  # the bulk insert, not the pages
    add_rows(1_000_000, start=datetime(2026, 1, 1, tzinfo=UTC), step_seconds=7)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE audit_logs")
        cursor.execute("SET LOCAL statement_timeout = '30s'")
    root_client.get(LIST)  # warm up
    for params in (
        {},
        {"p": "50"},
        {"action__exact": "DELETE"},
        {"resource_type": "session"},
        {"timestamp__year": "2026"},
        {"timestamp__year": "2026", "timestamp__month": "2"},
        {"q": "does-not-exist"},
    ):
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            response = root_client.get(LIST, params)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        assert unbounded_counts(captured.captured_queries) == [], params
        assert elapsed < 1.5, f"{params} took {elapsed:.2f}s"
    html = root_client.get(LIST).content.decode()
    estimate = int(re.search(r"about (\d+) entries", html).group(1))
    assert 900_000 < estimate < 1_100_000


def test_impossible_dates_are_a_redirect_not_an_error(root_client: Client, db):
    for params in (
        {"timestamp__year": "9999"},
        {"timestamp__year": "abc"},
        {"timestamp__year": "2026", "timestamp__month": "13"},
    ):
        response = root_client.get(LIST, params)
        assert response.status_code == 302 and response["Location"].endswith("?e=1")
    assert root_client.get(LIST, {"timestamp__year": "9998", "timestamp__month": "12"}).status_code == 200
