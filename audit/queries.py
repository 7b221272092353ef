"""Hand-written reads of audit_logs, each where the admin's list would otherwise scan the table.

Each is tested against the ORM query it stands in for (tests/audit/test_queries.py).
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

from audit.models import AuditLog
from config.db.raw_select import distinct_values

# (start year, month, day, end year, month, day): a half-open period of local dates.
Period = tuple[int, int, int, int, int, int]


def resource_types(*, limit: int = 1000) -> list[str]:
    """The resource types the trail holds, by a loose index scan of ix_audit_logs_resource_type
    (``SELECT DISTINCT`` would read every row)."""
    return distinct_values(AuditLog.objects.all(), "resource_type", limit=limit)


def periods_with_rows(queryset: QuerySet[AuditLog], field: str, periods: list[Period]) -> list[Period]:
    """The periods holding at least one row of ``queryset``, in one statement of index probes.

    The admin's date hierarchy asks this instead of Django's ``SELECT DISTINCT date_trunc(...)``
    over every matching row. The same answer as ``queryset.filter(field in period).exists()``
    for each period.
    """
    periods = [p for p in periods if p[3] <= datetime.MAXYEAR]
    if not periods:
        return []
    parts: list[str] = []
    params: list[Any] = []
    zone = timezone.get_current_timezone()
    for y1, m1, d1, y2, m2, d2 in periods:
        start = datetime.datetime(y1, m1, d1, tzinfo=zone)
        end = datetime.datetime(y2, m2, d2, tzinfo=zone)
        # A scalar subquery ordered by the indexed column, not EXISTS: PostgreSQL drops the
        # ORDER BY and LIMIT inside EXISTS and may then scan the table for the newest month.
        probe = queryset.filter(**{f"{field}__gte": start, f"{field}__lt": end}).order_by(field).values("pk")[:1]
        sql, probe_params = probe.query.sql_with_params()
        parts.append(f"({sql}) IS NOT NULL")
        params.extend(probe_params)
    with connections[queryset.db].cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        found = cursor.fetchone()
    return [period for period, present in zip(periods, found, strict=True) if present]
