"""The session admin: list and filters, a paged read-only message table, cancel via the service."""

from __future__ import annotations

import time

from django.db import connection
from django.test import Client

from agent_sessions.models import Session
from agent_sessions.services import session_complete, session_create
from audit.models import AuditLog
from tests.conftest import messages_of

LIST = "/admin/agent_sessions/session/"


def fill(session: Session, count: int) -> None:
    """``count`` messages in one statement (the append service does one per call)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO session_messages (id, session_id, sequence, role, content, metadata, token_count, created_at)
            SELECT gen_random_uuid(), %s, n, CASE WHEN n %% 2 = 1 THEN 'user' ELSE 'assistant' END,
                   'message number ' || n, '{}'::jsonb, 3, now()
              FROM generate_series(1, %s) AS n
            """,
            [session.pk, count],
        )
    Session.objects.filter(pk=session.pk).update(total_messages=count, total_tokens=3 * count)


def test_session_list_shows_status_agent_owner_and_counts(root_client: Client, alice, bob):
    one = session_create(actor=None, owner=alice.user, agent_id="planner", title="Trip plan")
    one.add_message("user", "hello", token_count=7)
    two = session_create(actor=None, owner=bob.user, agent_id="coder", title="Fix bug")
    session_complete(actor=None, session=two)
    html = root_client.get(LIST).content.decode()
    assert "Trip plan" in html and "planner" in html and "alice@example.com" in html
    for column in ("column-status", "column-messages_display", "column-tokens_display", "column-last_activity_display"):
        assert column in html
    completed = root_client.get(LIST, {"status__exact": "completed"}).content.decode()
    assert "Fix bug" in completed and "Trip plan" not in completed
    by_agent = root_client.get(LIST, {"agent_id": "planner"}).content.decode()
    assert "Trip plan" in by_agent and "Fix bug" not in by_agent
    assert "Fix bug" in root_client.get(LIST, {"q": "bob@"}).content.decode()


def test_a_session_with_10000_messages_opens_fast(root_client: Client, alice, django_assert_max_num_queries):
    session = session_create(actor=None, owner=alice.user, agent_id="long", title="Very long")
    fill(session, 10_000)
    url = f"{LIST}{session.pk}/change/"
    root_client.get(url)  # warm up templates and caches
    for page, first, last in ((None, 1, 50), ("200", 9951, 10_000), ("117", 5801, 5850)):
        started = time.perf_counter()
        with django_assert_max_num_queries(6):
            response = root_client.get(url, {"messages_page": page} if page else {})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        html = response.content.decode()
        assert f"Messages {first}–{last} of 10000" in html
        assert f"message number {first}<" in html and f"message number {last}<" in html
        assert f"message number {last + 1}<" not in html
        assert elapsed < 1.0, f"page {page} took {elapsed:.2f}s"


def test_out_of_range_message_pages_show_the_nearest_page(root_client: Client, alice):
    session = session_create(actor=None, owner=alice.user, agent_id="a", title="Short")
    fill(session, 60)
    url = f"{LIST}{session.pk}/change/"
    assert "Messages 51–60 of 60" in root_client.get(url, {"messages_page": "99"}).content.decode()
    assert "Messages 1–50 of 60" in root_client.get(url, {"messages_page": "zero"}).content.decode()


def test_long_messages_are_cut_in_the_table_and_whole_on_their_page(root_client: Client, alice):
    session = session_create(actor=None, owner=alice.user, agent_id="a", title="Wordy")
    session.add_message("assistant", "x" * 5_000 + "THE-END", tool_calls=[{"name": "search"}])
    html = root_client.get(f"{LIST}{session.pk}/change/").content.decode()
    assert "THE-END" not in html and "5007 characters" in html
    detail = root_client.get(f"{LIST}{session.pk}/messages/1/")
    assert detail.status_code == 200
    assert "THE-END" in detail.content.decode() and "search" in detail.content.decode()
    assert root_client.get(f"{LIST}{session.pk}/messages/2/").status_code == 404


def test_messages_are_read_only(root_client: Client, alice):
    session = session_create(actor=None, owner=alice.user, agent_id="a", title="Fixed")
    session.add_message("user", "original words")
    html = root_client.get(f"{LIST}{session.pk}/change/").content.decode()
    assert "original words" in html and "<textarea" not in html.split('id="session-messages"')[1]


def test_cancel_goes_through_the_service_once_per_session(root, alice):
    root_user, client = root
    active = session_create(actor=None, owner=alice.user, agent_id="a", title="Running")
    done = session_create(actor=None, owner=alice.user, agent_id="a", title="Finished")
    session_complete(actor=None, session=done)
    response = client.post(LIST, {"action": "cancel_sessions", "_selected_action": [active.pk, done.pk], "index": 0})
    assert response.status_code == 302
    shown = messages_of(response)
    assert "Cancelled 1 session." in shown
    assert any("Finished" in m and "not active" in m for m in shown)
    active.refresh_from_db()
    assert active.status == "cancelled"
    [row] = AuditLog.objects.filter(
        resource_type="session", resource_id=str(active.pk), changes__status__new="cancelled"
    )
    assert row.user_id == root_user.pk


def test_editing_the_title_is_audited(root, alice):
    root_user, client = root
    session = session_create(actor=None, owner=alice.user, agent_id="a", title="Old title")
    response = client.post(f"{LIST}{session.pk}/change/", {"title": "New title", "_save": "Save"})
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.title == "New title"
    [row] = AuditLog.objects.filter(resource_type="session", resource_id=str(session.pk), action="UPDATE")
    assert row.changes == {"title": {"old": "Old title", "new": "New title"}} and row.user_id == root_user.pk


def test_sessions_are_not_added_or_hard_deleted_in_the_admin(root_client: Client, alice):
    session = session_create(actor=None, owner=alice.user, agent_id="a", title="Keep")
    assert root_client.get(f"{LIST}add/").status_code == 403
    assert root_client.get(f"{LIST}{session.pk}/delete/").status_code == 403


def test_a_session_page_shows_kinds_and_opens_an_items_json(root_client: Client, alice):
    from agent_sessions.services import session_append_messages

    session = session_create(actor=None, owner=alice.user, agent_id="a", title="Agent run", external_id="conv-9")
    item_text = '{"type":"function_call","z":1.0,"a":"nul\\u0000","name":"weather"}'
    session_append_messages(session_id=session.pk, messages=[{"role": "user", "content": "hi"}, {"item": item_text}])
    html = root_client.get(f"{LIST}{session.pk}/change/").content.decode()
    assert "function_call" in html and "conv-9" in html and "(item)" in html
    page = root_client.get(f"{LIST}{session.pk}/messages/2/").content.decode()
    assert "function_call" in page and "item.json" in page
    assert page.index("&quot;z&quot;") < page.index("&quot;a&quot;")  # the item's own key order
    raw = root_client.get(f"{LIST}{session.pk}/messages/2/item.json")
    assert raw.status_code == 200 and raw.content.decode() == item_text
    assert root_client.get(f"{LIST}{session.pk}/messages/1/item.json").status_code == 404


def test_pops_and_clears_are_in_the_sessions_audit_trail(root_client: Client, alice):
    from agent_sessions.services import session_append_message, session_clear_messages, session_pop_messages

    session = session_create(actor=None, owner=alice.user, agent_id="a", title="Rewound")
    for text in ("a", "b", "c"):
        session_append_message(session_id=session.pk, role="user", content=text)
    session_pop_messages(actor=alice.user, session_id=session.pk, count=1)
    session_clear_messages(actor=alice.user, session_id=session.pk)
    rows = AuditLog.objects.filter(resource_type="session", resource_id=str(session.pk), action="UPDATE")
    assert sorted(row.metadata["operation"] for row in rows) == ["clear", "pop"]
    for row in rows:
        page = root_client.get(f"/admin/audit/auditlog/{row.pk}/change/").content.decode()
        assert row.metadata["operation"] in page
