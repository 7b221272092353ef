"""The admin index's activity dashboard: right figures, per-viewer panels, and a cost that
does not grow with the tables (a rollup of settled days, live reads of today only)."""

from __future__ import annotations

import datetime
import re

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agent_sessions.activity import count_days as session_count_days
from agent_sessions.models import ActivityDay, Message, Session
from agent_sessions.services import session_append_message, session_cancel, session_create
from apikeys.models import APIKey
from audit.activity import count_days as audit_count_days
from audit.models import AuditDay, AuditLog
from audit.services import audit_log_record
from config.admin.dashboard import Chart
from config.db.daily import SETTLE, last_days, start_of


@pytest.fixture(autouse=True)
def fresh_cache(db: None) -> None:
    """Today's live reads are cached 30 s (config.db.daily.live), and an earlier live-server
    test may have left an entry in the cache table: each test starts without one."""
    cache.clear()


def add_history(session: Session, *, days_ago: int, messages: int, tokens_each: int) -> None:
    """Messages stamped ``days_ago`` days back (noon), appended straight into the table."""
    stamp = start_of(timezone.localdate() - datetime.timedelta(days=days_ago)) + datetime.timedelta(hours=12)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO session_messages (id, session_id, sequence, role, content, metadata, token_count, created_at)
            SELECT gen_random_uuid(), %s, s.total_messages + n, 'user', 'x', '{}', %s, %s + make_interval(secs => n)
              FROM sessions s, generate_series(1, %s) AS n WHERE s.id = %s
            """,
            [session.pk, tokens_each, stamp, messages, session.pk],
        )
        cursor.execute("UPDATE sessions SET total_messages = total_messages + %s WHERE id = %s", [messages, session.pk])


def backdate_session(session: Session, *, days_ago: int) -> None:
    stamp = start_of(timezone.localdate() - datetime.timedelta(days=days_ago)) + datetime.timedelta(hours=9)
    Session.all_objects.filter(pk=session.pk).update(created_at=stamp, last_activity_at=stamp)


def panel(response, title: str):
    return next(p for p in response.context["dashboard"] if p.title == title)


def chart(response, title: str) -> Chart:
    return next(c for p in response.context["dashboard"] for c in p.charts if c.title.startswith(title))


def figure(response, label: str) -> int:
    return next(f.value for p in response.context["dashboard"] for f in p.figures if f.label == label)


def test_the_dashboard_shows_totals_and_30_days_of_activity(root_client: Client, alice, bob, make_key):
    planner = session_create(actor=None, owner=alice.user, agent_id="planner", title="Today")
    for n in range(3):
        session_append_message(session_id=planner.pk, role="user", content=f"m{n}", token_count=10)
    old = session_create(actor=None, owner=bob.user, agent_id="coder", title="Last week")
    backdate_session(old, days_ago=7)
    add_history(old, days_ago=7, messages=5, tokens_each=100)
    session_cancel(actor=None, session=session_create(actor=None, owner=bob.user, agent_id="coder", title="Gone"))
    make_key(alice.user, name="soon", expires_at=timezone.now() + datetime.timedelta(days=2))
    make_key(alice.user, name="later", expires_at=timezone.now() + datetime.timedelta(days=30))
    for _ in range(2):
        audit_log_record(action=AuditLog.Action.FAILED_AUTH, resource_type="api_key", metadata={"reason": "unknown"})

    response = root_client.get("/admin/")
    assert response.status_code == 200
    assert figure(response, "users") == 3  # alice, bob, root
    assert figure(response, "active sessions") == 2 and figure(response, "cancelled sessions") == 1
    assert figure(response, "messages today") == 3 and figure(response, "tokens today") == 30
    assert figure(response, "active API keys") == APIKey.objects.in_state("active").count() == 4
    assert figure(response, "keys expiring within 7 days") == 1
    assert figure(response, "failed authentications today") == 2
    days = last_days(30)
    week_ago = days.days[-8]
    messages = dict(zip(days.days, (v for _, v in chart(response, "Messages appended").points), strict=True))
    assert messages[days.today] == 3 and messages[week_ago] == 5 and sum(messages.values()) == 8
    sessions = dict(zip(days.days, (v for _, v in chart(response, "Sessions created").points), strict=True))
    assert sessions[days.today] == 2 and sessions[week_ago] == 1
    assert chart(response, "Tokens per agent").points == [("coder", 500), ("planner", 30)]
    failed = [v for _, v in chart(response, "Failed authentications").points]
    assert len(failed) == 30 and failed[-1] == 2 and sum(failed) == 2

    html = response.content.decode()
    assert html.count('<svg class="chart') == 4
    assert "<title>coder: 500 tokens</title>" in html
    assert re.search(r'<rect class="bar"[^>]*><title>[A-Z][a-z]{2} \d+: 3 messages</title>', html)
    assert "cdn" not in html.lower() and "<script" not in html.split('id="activity-dashboard"')[1].split("</svg>")[0]


def test_each_viewer_sees_the_panels_they_may(make_staff):
    staff, client = make_staff(roles=[])
    staff.user_permissions.add(Permission.objects.get(codename="view_apikey", content_type__app_label="apikeys"))
    response = client.get("/admin/")
    assert [p.title for p in response.context["dashboard"]] == ["API keys"]
    assert 'id="activity-dashboard"' in response.content.decode()
    _, developer = make_staff(roles=["developer"])
    titles = [p.title for p in developer.get("/admin/").context["dashboard"]]
    assert titles == ["Users", "Sessions", "API keys", "Authentication"]
    _, nobody = make_staff(roles=[])
    assert 'id="activity-dashboard"' not in nobody.get("/admin/").content.decode()


def test_settled_days_are_rolled_up_once_and_match_a_live_count(root_client: Client, alice):
    for days_ago, count in ((1, 4), (3, 2), (40, 9)):
        session = session_create(actor=None, owner=alice.user, agent_id=f"agent-{days_ago}", title="x")
        backdate_session(session, days_ago=days_ago)
        add_history(session, days_ago=days_ago, messages=count, tokens_each=days_ago)
    root_client.get("/admin/")
    days = last_days(30)
    totals = {row.day: row for row in ActivityDay.objects.filter(agent_id__isnull=True)}
    assert set(totals) == set(days.settled)  # every settled day in the window, none outside it
    for day, row in totals.items():
        start, end = start_of(day), start_of(day + datetime.timedelta(days=1))
        live = Message.objects.filter(created_at__gte=start, created_at__lt=end)
        assert row.messages == live.count()
        assert row.tokens == sum(live.values_list("token_count", flat=True))
        assert row.sessions_created == Session.all_objects.filter(created_at__gte=start, created_at__lt=end).count()
    assert totals[days.days[-2]].messages == 4 and totals[days.days[-4]].messages == 2
    per_agent = ActivityDay.objects.get(day=days.days[-2], agent_id="agent-1")
    assert (per_agent.messages, per_agent.tokens, per_agent.sessions_created) == (4, 4, 1)
    audit_totals = {row.day: row.count for row in AuditDay.objects.filter(action__isnull=True)}
    for day, count in audit_totals.items():
        start, end = start_of(day), start_of(day + datetime.timedelta(days=1))
        assert count == AuditLog.objects.filter(timestamp__gte=start, timestamp__lt=end).count()
    # A second render writes nothing: the days are there.
    with CaptureQueriesContext(connection) as again:
        root_client.get("/admin/")
    assert not [q for q in again.captured_queries if q["sql"].startswith('INSERT INTO "session_activity_days"')]
    assert not [q for q in again.captured_queries if q["sql"].startswith('INSERT INTO "audit_log_days"')]


def test_count_days_counts_whole_days_including_empty_ones(alice):
    start = start_of(timezone.localdate() - datetime.timedelta(days=5))
    end = start + datetime.timedelta(days=3)
    rows = session_count_days(start, end)
    assert sorted(row.day for row in rows if row.agent_id is None) == [
        timezone.localdate() - datetime.timedelta(days=d) for d in (5, 4, 3)
    ]
    assert all(row.messages == row.tokens == row.sessions_created == 0 for row in rows)
    audit_rows = audit_count_days(start, end)
    assert len([row for row in audit_rows if row.action is None]) == 3


def test_a_day_is_settled_only_some_minutes_after_it_ends():
    midnight = start_of(timezone.localdate())
    just_after = last_days(30, now=midnight + SETTLE / 2)
    assert just_after.live == just_after.days[-2:]  # yesterday still read live
    later = last_days(30, now=midnight + SETTLE * 2)
    assert later.live == later.days[-1:] and len(later.settled) == 29


def add_bulk(messages: int, audit_rows: int) -> None:
    """Filler over 60 days: sessions of 20 agents with messages, and audit rows (2% failed auth)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM users LIMIT 1")
        owner = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO sessions (id, user_id, agent_id, title, status, context, metadata, total_messages,
                                  total_tokens, last_activity_at, created_at, updated_at)
            SELECT gen_random_uuid(), %s, 'agent-' || (n %% 20), 'bulk', 'completed', '{}', '{}', 50, 500,
                   now() - make_interval(days => n %% 60), now() - make_interval(days => n %% 60), now()
              FROM generate_series(1, %s) AS n
            """,
            [owner, max(1, messages // 50)],
        )
        cursor.execute(
            """
            INSERT INTO session_messages (id, session_id, sequence, role, content, metadata, token_count, created_at)
            SELECT gen_random_uuid(), s.id, g, 'user', 'x', '{}', 10, s.created_at + make_interval(secs => g)
              FROM sessions s, generate_series(1, 50) AS g WHERE s.title = 'bulk'
            """
        )
        cursor.execute(
            """
            INSERT INTO audit_logs (id, created_at, updated_at, timestamp, action, resource_type, resource_id)
            SELECT gen_random_uuid(), now(), now(), now() - make_interval(secs => n * (5184000 / %s)),
                   CASE WHEN n %% 50 = 0 THEN 'FAILED_AUTH' ELSE 'UPDATE' END, 'session', n::text
              FROM generate_series(1, %s) AS n
            """,
            [audit_rows, audit_rows],
        )
        cursor.execute("ANALYZE")


@pytest.mark.slow
def test_the_index_costs_a_fixed_number_of_bounded_statements_as_tables_grow(root_client: Client, alice):
    today = session_create(actor=None, owner=alice.user, agent_id="planner", title="today")
    session_append_message(session_id=today.pk, role="user", content="hi", token_count=1)
    root_client.get("/admin/")  # fills the (empty) rollup
    cache.clear()  # each measured render reads today live, as one does every LIVE_SECONDS
    with CaptureQueriesContext(connection) as small:
        assert root_client.get("/admin/").status_code == 200
    add_bulk(messages=100_000, audit_rows=100_000)
    ActivityDay.objects.all().delete()
    AuditDay.objects.all().delete()
    cache.clear()
    with CaptureQueriesContext(connection) as filling:
        root_client.get("/admin/")
    cache.clear()
    with CaptureQueriesContext(connection) as large:
        response = root_client.get("/admin/")
    assert response.status_code == 200
    assert sum(v for _, v in chart(response, "Messages appended").points) > 40_000
    # The same statements whatever the size: each read of messages or audit rows is bounded by a
    # time range of the unsettled days (or, once per day, the day being rolled up).
    assert len(large.captured_queries) == len(small.captured_queries), [q["sql"] for q in large.captured_queries]
    # Session and user (2), users (1), sessions by status (4), today's messages and tokens: the
    # rollup check and read, the live reads (3), keys (2), failed authentications (3), recent
    # actions (3), and the shared cache's get and set for the two live reads.
    budget = 32
    assert len(large.captured_queries) <= budget, [q["sql"][:120] for q in large.captured_queries]
    since = timezone.now() - datetime.timedelta(days=2)
    for query in large.captured_queries:
        sql = query["sql"]
        if 'FROM "session_messages"' in sql or ('FROM "audit_logs"' in sql and "GROUP BY" in sql):
            stamp = re.search(r'"(?:created_at|timestamp)" >= \'([^\']+)\'', sql)
            assert stamp, sql
            assert datetime.datetime.fromisoformat(stamp.group(1)) >= since, sql
        if '"django_cache"' in sql:
            continue  # Django's cache culls by counting its own table, held under MAX_ENTRIES
        assert not ("COUNT(" in sql.upper() and " LIMIT " not in sql.upper() and "GROUP BY" not in sql.upper()), sql
    # Filling 29 missing days is a few statements more, never one per row.
    assert len(filling.captured_queries) <= budget + 6
    # Within LIVE_SECONDS the live reads come from the cache: no message or audit row is read.
    with CaptureQueriesContext(connection) as cached:
        again = root_client.get("/admin/")
    assert chart(again, "Messages appended").points == chart(response, "Messages appended").points
    assert not [q for q in cached.captured_queries if 'FROM "session_messages"' in q["sql"]]
    assert len(cached.captured_queries) < len(large.captured_queries)
