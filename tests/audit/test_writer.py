from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.models import AuditLog
from audit.services import audit_log_record
from config.context import system_actor

pytestmark = pytest.mark.django_db


def _row() -> AuditLog:
    return audit_log_record(action=AuditLog.Action.EXECUTE, resource_type="test", resource_id="1")


def test_the_database_refuses_updates_to_audit_rows():
    row = _row()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=row.pk).update(resource_type="tampered")
    assert AuditLog.objects.get(pk=row.pk).resource_type == "test"


def test_the_database_refuses_deletes_of_audit_rows():
    row = _row()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=row.pk).delete()
    assert AuditLog.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_deletes_pass_only_with_the_prune_switch_set_locally():
    row = _row()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL audit.allow_prune = 'on'")
        AuditLog.objects.filter(pk=row.pk).delete()
    assert not AuditLog.objects.filter(pk=row.pk).exists()
    # SET LOCAL ended with its transaction: the next delete is refused again.
    other = _row()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditLog.objects.filter(pk=other.pk).delete()


def test_secrets_are_masked_in_changes():
    row = audit_log_record(
        action=AuditLog.Action.UPDATE,
        resource_type="user",
        changes={"password": {"old": "hunter2", "new": "hunter3"}, "key_hash": "abc", "name": {"old": "a", "new": "b"}},
    )
    stored = AuditLog.objects.get(pk=row.pk)
    assert stored.changes == {
        "password": {"old": "***", "new": "***"},
        "key_hash": "***",
        "name": {"old": "a", "new": "b"},
    }


def test_system_actions_name_their_actor_and_have_no_request():
    with system_actor("expire_sessions"):
        row = _row()
    stored = AuditLog.objects.get(pk=row.pk)
    assert stored.user_id is None
    assert stored.metadata == {"actor": "system:expire_sessions"}
    assert stored.ip_address is None and stored.request_path is None and stored.request_method is None
    assert stored.timestamp <= timezone.now()


def test_the_writer_joins_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        _row()
        raise RuntimeError("the change failed")
    assert not AuditLog.objects.exists()
