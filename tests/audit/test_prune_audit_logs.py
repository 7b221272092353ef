"""manage.py prune_audit_logs: the one sanctioned way rows leave the append-only audit table."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction
from django.utils import timezone

from audit.models import AuditLog

# Real transactions: each batch commits, and SET LOCAL must end with it.
pytestmark = pytest.mark.django_db(transaction=True)


def _rows(count: int, *, days_old: float) -> list[AuditLog]:
    when = timezone.now() - timedelta(days=days_old)
    return [
        AuditLog.objects.create(
            timestamp=when + timedelta(seconds=i),
            action=AuditLog.Action.UPDATE,
            resource_type="session",
            resource_id=str(uuid.uuid4()),
            user_id=uuid.uuid4(),
            ip_address="203.0.113.7",
            request_id=uuid.uuid4(),
            changes={"title": {"old": f"old {i}", "new": f"new {i}"}},
            metadata={"n": i},
        )
        for i in range(count)
    ]


def _prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_audit_logs", *args, stdout=out)
    return out.getvalue()


def _ids(rows: list[AuditLog]) -> set[uuid.UUID]:
    return {row.pk for row in rows}


def _summaries():
    return AuditLog.objects.filter(resource_type="audit_log", metadata__operation="prune")


def test_rows_older_than_days_go_newer_rows_stay():
    old = _rows(5, days_old=100)
    new = _rows(3, days_old=10)

    output = _prune("--older-than", "30")

    assert "deleted 5 audit row(s) older than 30 day(s)" in output
    assert not AuditLog.objects.filter(pk__in=_ids(old)).exists()
    assert AuditLog.objects.filter(pk__in=_ids(new)).count() == 3
    (summary,) = _summaries()
    assert summary.action == "DELETE" and summary.user_id is None
    assert summary.metadata["count"] == 5
    assert summary.metadata["actor"] == "system:prune_audit_logs"
    cutoff = summary.metadata["cutoff"]
    assert timezone.now() - timedelta(days=30, minutes=1) < timezone.datetime.fromisoformat(cutoff) < timezone.now()


def test_without_the_command_a_delete_is_still_refused_afterwards():
    _rows(2, days_old=100)
    (survivor,) = _rows(1, days_old=1)
    _prune("--older-than", "30")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=survivor.pk).delete()
    assert AuditLog.objects.filter(pk=survivor.pk).exists()


def test_the_default_retention_is_the_setting(settings):
    settings.AUDIT_LOG_RETENTION_DAYS = 50
    older = _rows(2, days_old=60)
    younger = _rows(2, days_old=40)

    assert "deleted 2 audit row(s) older than 50 day(s)" in _prune()

    assert not AuditLog.objects.filter(pk__in=_ids(older)).exists()
    assert AuditLog.objects.filter(pk__in=_ids(younger)).count() == 2


def test_archive_gets_every_pruned_row_as_a_json_line_oldest_first(tmp_path: Path):
    old = _rows(4, days_old=100)
    _rows(1, days_old=1)
    archive = tmp_path / "audit.jsonl"

    output = _prune("--older-than", "30", "--archive", str(archive), "--batch-size", "3")

    assert f"archived to {archive}" in output
    lines = [json.loads(line) for line in archive.read_text().splitlines()]
    assert [line["id"] for line in lines] == [str(row.pk) for row in old]
    first = lines[0]
    assert set(first) == {f.attname for f in AuditLog._meta.concrete_fields}
    assert first["changes"] == {"title": {"old": "old 0", "new": "new 0"}}
    assert first["metadata"] == {"n": 0}
    assert first["ip_address"] == "203.0.113.7" and first["resource_type"] == "session"
    assert timezone.datetime.fromisoformat(first["timestamp"]) == old[0].timestamp
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert _summaries().get().metadata["archive"] == str(archive)

    # A second run appends; it never truncates what an earlier run archived.
    more = _rows(2, days_old=200)
    _prune("--older-than", "30", "--archive", str(archive))
    assert len(archive.read_text().splitlines()) == len(old) + len(more)


def test_an_archive_that_cannot_be_written_deletes_nothing(tmp_path: Path):
    old = _rows(3, days_old=100)
    with pytest.raises(CommandError, match="cannot open the archive"):
        _prune("--older-than", "30", "--archive", str(tmp_path / "missing-dir" / "audit.jsonl"))
    assert AuditLog.objects.filter(pk__in=_ids(old)).count() == 3


def test_dry_run_counts_and_deletes_nothing(tmp_path: Path):
    old = _rows(3, days_old=100)
    archive = tmp_path / "audit.jsonl"

    output = _prune("--older-than", "30", "--dry-run", "--archive", str(archive))

    assert "dry run: 3 audit row(s) older than 30 day(s) would be deleted" in output
    assert AuditLog.objects.filter(pk__in=_ids(old)).count() == 3
    assert not archive.exists()
    assert not _summaries().exists()


def test_batches_report_progress():
    _rows(25, days_old=100)

    output = _prune("--older-than", "30", "--batch-size", "10")

    assert "... 10 row(s) pruned so far" in output and "... 20 row(s) pruned so far" in output
    assert "deleted 25 audit row(s)" in output
    assert not AuditLog.objects.filter(timestamp__lt=timezone.now() - timedelta(days=30)).exists()


def test_the_summary_row_survives_the_next_prune_and_an_empty_prune_writes_none():
    _rows(2, days_old=100)
    _prune("--older-than", "30")
    assert "deleted 0 audit row(s)" in _prune("--older-than", "30")
    assert _summaries().count() == 1


def test_older_than_must_be_at_least_a_day():
    with pytest.raises(CommandError, match="at least 1 day"):
        _prune("--older-than", "0")
