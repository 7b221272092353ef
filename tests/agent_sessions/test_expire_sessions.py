"""manage.py expire_sessions: what it closes, its dry run, its batches, and two runs at once."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from agent_sessions.models import Session
from agent_sessions.services import session_expire_due
from audit.models import AuditLog
from config.context import system_actor
from tests.conftest import _conninfo

pytestmark = pytest.mark.django_db


def _session(user, *, idle_hours: float = 0, expires_in_hours: float | None = None, **fields) -> Session:
    now = timezone.now()
    session = Session.objects.create(
        user=user,
        agent_id=fields.pop("agent_id", "agent"),
        title=fields.pop("title", "t"),
        expires_at=now + timedelta(hours=expires_in_hours) if expires_in_hours is not None else None,
        **fields,
    )
    Session.all_objects.filter(pk=session.pk).update(last_activity_at=now - timedelta(hours=idle_hours))
    return session


def _expire(*args: str) -> str:
    out = StringIO()
    call_command("expire_sessions", *args, stdout=out)
    return out.getvalue()


def _expiry_rows(session: Session):
    return AuditLog.objects.for_resource("session", session.pk).filter(metadata__completion_reason="expired")


def test_it_closes_sessions_past_expires_at_or_idle_too_long(alice, bob):
    past_expiry = _session(alice.user, expires_in_hours=-0.01, metadata={"keep": "me"})
    idle = _session(bob.user, idle_hours=25)
    idle_but_not_yet_expiring = _session(alice.user, idle_hours=25, expires_in_hours=5)
    recent = _session(alice.user, idle_hours=23)
    future_expiry = _session(alice.user, expires_in_hours=1)
    already_done = _session(alice.user, idle_hours=100, status=Session.Status.FAILED)
    deleted = _session(alice.user, idle_hours=100)
    deleted.soft_delete()

    output = _expire()

    assert "closed 3 expired session(s)" in output
    closed = {past_expiry.pk: "expires_at", idle.pk: "idle", idle_but_not_yet_expiring.pk: "idle"}
    for session in Session.all_objects.filter(pk__in=closed):
        assert session.status == Session.Status.COMPLETED
        assert session.metadata["completion_reason"] == "expired"
        (row,) = _expiry_rows(session)
        assert row.action == "UPDATE" and row.user_id is None
        assert row.changes == {"status": {"old": "active", "new": "completed"}}
        assert row.metadata == {
            "completion_reason": "expired",
            "rule": closed[session.pk],
            "actor": "system:expire_sessions",
        }
    assert Session.objects.get(pk=past_expiry.pk).metadata == {"keep": "me", "completion_reason": "expired"}
    for untouched, status in [
        (recent, "active"),
        (future_expiry, "active"),
        (already_done, "failed"),
        (deleted, "active"),
    ]:
        assert Session.all_objects.get(pk=untouched.pk).status == status
        assert not _expiry_rows(untouched).exists()


def test_dry_run_counts_and_changes_nothing(alice):
    sessions = [_session(alice.user, idle_hours=30) for _ in range(3)]
    _session(alice.user, idle_hours=1)
    audit_rows = AuditLog.objects.count()

    output = _expire("--dry-run")

    assert "dry run: 3 session(s) would be closed" in output
    assert all(Session.objects.get(pk=s.pk).status == "active" for s in sessions)
    assert AuditLog.objects.count() == audit_rows


def test_idle_limit_follows_the_setting(alice, settings):
    settings.SESSION_EXPIRY_HOURS = 2
    stale = _session(alice.user, idle_hours=3)
    fresh = _session(alice.user, idle_hours=1)

    assert "closed 1 expired session(s) (idle limit 2 h)" in _expire()

    assert Session.objects.get(pk=stale.pk).status == "completed"
    assert Session.objects.get(pk=fresh.pk).status == "active"


def test_it_works_in_batches_and_reports_progress(alice):
    sessions = [_session(alice.user, idle_hours=48) for _ in range(7)]

    output = _expire("--batch-size", "3")

    assert "... 3 closed so far" in output and "... 6 closed so far" in output
    assert "closed 7 expired session(s)" in output
    assert Session.objects.filter(pk__in=[s.pk for s in sessions], status="completed").count() == 7
    assert AuditLog.objects.filter(metadata__completion_reason="expired").count() == 7


def test_a_second_run_finds_nothing_to_do(alice):
    _session(alice.user, idle_hours=48)
    assert "closed 1 " in _expire()
    assert "closed 0 " in _expire()
    assert AuditLog.objects.filter(metadata__completion_reason="expired").count() == 1


def test_a_session_closed_by_expiry_refuses_messages(alice):
    session = _session(alice.user, idle_hours=48)
    _expire()
    response = alice.client.post(
        f"/api/v1/sessions/{session.pk}/messages/", {"role": "user", "content": "late"}, format="json"
    )
    assert response.status_code == 409
    assert "completed" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_close_each_session_once_with_one_audit_row(make_user):
    user = make_user()
    now = timezone.now()
    sessions = Session.objects.bulk_create(
        [
            Session(user=user, agent_id="a", title=f"s{i}", last_activity_at=now - timedelta(hours=30))
            for i in range(400)
        ]
    )
    start = threading.Barrier(2)
    closed: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            with system_actor("expire_sessions"):
                closed.append(session_expire_due(batch_size=25))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert sum(closed) == len(sessions)
    assert Session.objects.filter(status="completed").count() == len(sessions)
    per_session = AuditLog.objects.filter(resource_type="session", metadata__completion_reason="expired")
    assert per_session.count() == len(sessions)
    assert per_session.values("resource_id").distinct().count() == len(sessions)


@pytest.mark.django_db(transaction=True)
def test_a_session_locked_elsewhere_is_left_for_the_next_run(make_user):
    user = make_user()
    busy = _session(user, idle_hours=30)
    other = _session(user, idle_hours=30)
    # Another transaction (an append in flight, say) holds the row: the sweep does not wait.
    with psycopg.connect(**_conninfo(connection.settings_dict["NAME"])) as holder:
        holder.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", [busy.pk])
        with system_actor("expire_sessions"):
            assert session_expire_due() == 1
        holder.rollback()

    assert Session.objects.get(pk=busy.pk).status == "active"
    assert Session.objects.get(pk=other.pk).status == "completed"
    with system_actor("expire_sessions"):
        assert session_expire_due() == 1
    assert Session.objects.get(pk=busy.pk).status == "completed"
    assert _expiry_rows(busy).count() == 1
