"""The audit trail's hand-written reads and its one delete, against their ORM twins."""

from __future__ import annotations

import datetime
from datetime import timedelta

import pytest
from django.db import ProgrammingError, transaction
from django.utils import timezone

from audit.models import AuditLog
from audit.queries import periods_with_rows, resource_types
from audit.services import audit_log_record
from tests.audit.test_admin import add_rows

pytestmark = pytest.mark.django_db


def test_resource_types_are_the_distinct_values_of_the_table(alice):
    audit_log_record(action=AuditLog.Action.READ, resource_type="zeta")
    twin = sorted(set(AuditLog.objects.values_list("resource_type", flat=True)))
    assert resource_types() == twin and "zeta" in twin
    assert resource_types(limit=1) == twin[:1]


def test_periods_with_rows_are_the_periods_the_orm_finds_rows_in(db):
    start = datetime.datetime(2025, 3, 30, 12, tzinfo=datetime.UTC)
    add_rows(5, start=start, step_seconds=86_400)  # 30 March .. 3 April
    periods = [(2025, m, 1, 2025 + (m == 12), m % 12 + 1, 1) for m in range(1, 13)]
    days = [(2025, 3, d, 2025, 3, d + 1) for d in range(25, 31)]
    queryset = AuditLog.objects.all()
    for candidates in (periods, days):
        expected = [
            p
            for p in candidates
            if queryset.filter(
                timestamp__gte=datetime.datetime(*p[:3], tzinfo=datetime.UTC),
                timestamp__lt=datetime.datetime(*p[3:], tzinfo=datetime.UTC),
            ).exists()
        ]
        assert periods_with_rows(queryset, "timestamp", candidates) == expected
    assert [p[1] for p in periods_with_rows(queryset, "timestamp", periods)] == [3, 4]
    narrowed = queryset.filter(action="NOT-AN-ACTION")
    assert periods_with_rows(narrowed, "timestamp", periods) == []
    assert periods_with_rows(queryset, "timestamp", [(9999, 12, 1, 10000, 1, 1)]) == []


def test_prune_deletes_exactly_the_queryset_and_nothing_else_may_delete(db):
    old = [audit_log_record(action=AuditLog.Action.READ, resource_type="old") for _ in range(3)]
    keep = audit_log_record(action=AuditLog.Action.READ, resource_type="keep")
    assert AuditLog.objects.filter(pk__in=[r.pk for r in old]).prune() == 3
    assert list(AuditLog.objects.values_list("pk", flat=True)) == [keep.pk]
    with pytest.raises(ProgrammingError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=keep.pk).delete()
    with pytest.raises(ProgrammingError, match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=keep.pk).update(timestamp=timezone.now() - timedelta(days=1))
