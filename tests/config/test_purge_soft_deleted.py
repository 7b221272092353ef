"""manage.py purge_soft_deleted: hard-deletes what was soft-deleted more than DAYS ago."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import User
from accounts.services import user_soft_delete
from agent_sessions.models import Message, Session
from apikeys.models import APIKey
from apikeys.services import api_key_revoke
from audit.models import AuditLog

pytestmark = pytest.mark.django_db


def _days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def _backdate(model, obj, days: float) -> None:
    model.all_objects.filter(pk=obj.pk).update(deleted_at=_days_ago(days))


def _session_with_messages(user: User, count: int) -> Session:
    session = Session.objects.create(user=user, agent_id="a", title="t")
    for i in range(count):
        session.add_message("user", f"message {i}")
    return session


def _purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_soft_deleted", *args, stdout=out)
    return out.getvalue()


def _purge_rows(resource_type: str, obj) -> list[AuditLog]:
    return list(AuditLog.objects.for_resource(resource_type, obj.pk).filter(metadata__operation="purge"))


@pytest.fixture
def old_user(make_user, make_key) -> dict:
    """A user soft-deleted 40 days ago, with a key and two sessions (one live, one deleted)."""
    user = make_user()
    key, _ = make_key(user)
    live = _session_with_messages(user, 3)
    deleted = _session_with_messages(user, 1)
    deleted.soft_delete()
    user_soft_delete(actor=None, user=user)
    _backdate(User, user, 40)
    return {"user": user, "key": key, "sessions": [live, deleted]}


def test_a_user_deleted_long_ago_goes_with_its_keys_sessions_and_messages(old_user):
    user = old_user["user"]
    earlier_rows = AuditLog.objects.for_resource("user", user.pk).count()
    assert earlier_rows >= 2  # created, deleted

    output = _purge("--older-than", "30")

    assert "purged 1 user(s) (with 1 API key(s), 2 session(s))" in output
    assert "4 message(s) in all" in output
    assert not User.all_objects.filter(pk=user.pk).exists()
    assert not APIKey.all_objects.filter(user_id=user.pk).exists()
    assert not Session.all_objects.filter(user_id=user.pk).exists()
    assert not Message.objects.filter(session_id__in=[s.pk for s in old_user["sessions"]]).exists()
    # The audit trail is not touched by the hard delete (no foreign key), and records it.
    assert AuditLog.objects.for_resource("user", user.pk).count() == earlier_rows + 1
    (row,) = _purge_rows("user", user)
    assert row.action == "DELETE" and row.user_id is None
    assert row.metadata["actor"] == "system:purge_soft_deleted"
    assert (row.metadata["api_keys"], row.metadata["sessions"]) == (1, 2)
    assert user.email not in str(row.metadata) and row.changes is None
    (key_row,) = _purge_rows("api_key", old_user["key"])
    assert key_row.metadata["with_user"] is True and key_row.metadata["user_id"] == str(user.pk)
    for session in old_user["sessions"]:
        assert len(_purge_rows("session", session)) == 1


def test_a_user_deleted_recently_stays_with_everything_it_owns(make_user, make_key):
    user = make_user()
    key, _ = make_key(user)
    session = _session_with_messages(user, 2)
    user_soft_delete(actor=None, user=user)
    _backdate(User, user, 5)
    _backdate(APIKey, key, 5)

    output = _purge("--older-than", "30")

    assert "purged 0 user(s)" in output
    assert User.all_objects.filter(pk=user.pk).exists()
    assert APIKey.all_objects.filter(pk=key.pk).exists()
    assert Message.objects.filter(session=session).count() == 2
    assert not AuditLog.objects.filter(metadata__operation="purge").exists()


def test_old_sessions_and_revoked_keys_of_live_users_go_on_their_own(alice, make_key):
    old_session = _session_with_messages(alice.user, 2)
    old_session.soft_delete()
    _backdate(Session, old_session, 31)
    recent_session = _session_with_messages(alice.user, 1)
    recent_session.soft_delete()
    _backdate(Session, recent_session, 29)
    live_session = _session_with_messages(alice.user, 1)
    old_key, _ = make_key(alice.user, name="old")
    api_key_revoke(actor=None, api_key=old_key)
    _backdate(APIKey, old_key, 31)
    recent_key, _ = make_key(alice.user, name="recent")
    api_key_revoke(actor=None, api_key=recent_key)

    output = _purge("--older-than", "30")

    assert "0 user(s) (with 0 API key(s), 0 session(s)), 1 more session(s), 1 more API key(s)" in output
    assert not Session.all_objects.filter(pk=old_session.pk).exists()
    assert not Message.objects.filter(session_id=old_session.pk).exists()
    assert not APIKey.all_objects.filter(pk=old_key.pk).exists()
    assert set(Session.all_objects.filter(user=alice.user).values_list("pk", flat=True)) == {
        recent_session.pk,
        live_session.pk,
    }
    assert set(APIKey.all_objects.filter(user=alice.user).values_list("pk", flat=True)) == {
        alice.key.pk,
        recent_key.pk,
    }
    (session_row,) = _purge_rows("session", old_session)
    assert session_row.metadata["user_id"] == str(alice.user.pk) and "with_user" not in session_row.metadata
    assert len(_purge_rows("api_key", old_key)) == 1
    assert User.objects.filter(pk=alice.user.pk).exists()


def test_dry_run_counts_and_deletes_nothing(old_user, alice):
    stray = _session_with_messages(alice.user, 2)
    stray.soft_delete()
    _backdate(Session, stray, 60)
    audit_rows = AuditLog.objects.count()

    output = _purge("--older-than", "30", "--dry-run")

    assert (
        "dry run: would purge 1 user(s) (with 1 API key(s), 2 session(s)), 1 more session(s), 0 more API key(s); "
        "6 message(s) in all"
    ) in output
    assert User.all_objects.filter(pk=old_user["user"].pk).exists()
    assert Session.all_objects.filter(pk=stray.pk).exists()
    assert AuditLog.objects.count() == audit_rows


def test_it_works_in_batches_and_reports_progress(make_user):
    users = [make_user() for _ in range(5)]
    for user in users:
        user_soft_delete(actor=None, user=user)
        _backdate(User, user, 10)

    output = _purge("--older-than", "7", "--batch-size", "2")

    assert "... 2 user(s) purged so far" in output and "... 4 user(s) purged so far" in output
    assert "purged 5 user(s)" in output
    assert not User.all_objects.filter(pk__in=[u.pk for u in users]).exists()
    assert AuditLog.objects.filter(resource_type="user", metadata__operation="purge").count() == 5


def test_revoked_keys_and_deleted_sessions_go_in_batches_too(make_user, make_key):
    owner = make_user()
    keys = [make_key(owner, name=f"k{i}")[0] for i in range(5)]
    sessions = [Session.objects.create(user=owner, agent_id="a", title=f"s{i}") for i in range(3)]
    for key in keys:
        _backdate(APIKey, key, 10)
    for session in sessions:
        _backdate(Session, session, 10)

    output = _purge("--older-than", "7", "--batch-size", "2")

    assert "... 2 api_key(s) purged so far" in output and "... 4 api_key(s) purged so far" in output
    assert "... 2 session(s) purged so far" in output
    assert not APIKey.all_objects.filter(pk__in=[k.pk for k in keys]).exists()
    assert not Session.all_objects.filter(pk__in=[s.pk for s in sessions]).exists()
    assert AuditLog.objects.filter(resource_type="api_key", metadata__operation="purge").count() == 5
    assert User.objects.filter(pk=owner.pk).exists()  # a live owner stays


def test_older_than_zero_purges_everything_soft_deleted(make_user):
    user = make_user()
    user_soft_delete(actor=None, user=user)
    _purge("--older-than", "0")
    assert not User.all_objects.filter(pk=user.pk).exists()


def test_older_than_is_required_and_not_negative():
    with pytest.raises(CommandError, match="older-than"):
        call_command("purge_soft_deleted")
    with pytest.raises(CommandError, match="0 or more"):
        call_command("purge_soft_deleted", "--older-than", "-1")
