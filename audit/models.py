from __future__ import annotations

from typing import Self

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, transaction
from django.db.models import Q

from config.db.models import UUIDTimestampedModel


class Action(models.TextChoices):
    CREATE = "CREATE"
    READ = "READ"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    EXECUTE = "EXECUTE"
    LOGIN = "LOGIN"
    LOGOUT = "LOGOUT"
    FAILED_AUTH = "FAILED_AUTH"


class AuditLogQuerySet(models.QuerySet):
    def for_resource(self, resource_type: str, resource_id: object) -> Self:
        return self.filter(resource_type=resource_type, resource_id=str(resource_id))

    def prune(self) -> int:
        """Delete these rows, the one sanctioned way rows leave audit_logs; return how many.

        The append-only trigger lets a DELETE through only in a transaction that set
        ``audit.allow_prune`` locally; it is switched off again before this returns, so that
        nothing else in the caller's transaction can delete audit rows. Only
        ``audit.services.audit_log_prune`` calls this (it writes the summary audit row).
        """
        with transaction.atomic(using=self.db), connections[self.db].cursor() as cursor:
            cursor.execute("SET LOCAL audit.allow_prune = 'on'")
            # No relation points at audit_logs, so this is one DELETE ... WHERE id IN (...).
            deleted, _ = models.QuerySet.delete(self)
            cursor.execute("SET LOCAL audit.allow_prune = 'off'")
        return deleted

    prune.alters_data = True  # type: ignore[attr-defined]
    prune.queryset_only = True  # type: ignore[attr-defined]


class AuditLog(UUIDTimestampedModel):
    """One audited action. Append-only: a database trigger rejects UPDATE and DELETE.

    ``user_id`` has no foreign key so the trail outlives the users it names. Columns that only
    make sense for an HTTP request are NULL for system actions (management commands).
    """

    Action = Action

    timestamp = models.DateTimeField(db_comment="When the action occurred")
    user_id = models.UUIDField(null=True, blank=True, db_comment="Actor; NULL for system or anonymous")
    action = models.CharField(max_length=50, choices=Action.choices)
    resource_type = models.CharField(max_length=100)
    resource_id = models.CharField(max_length=255, null=True, blank=True)
    ip_address = models.CharField(max_length=45, null=True, blank=True)
    user_agent = models.CharField(max_length=500, null=True, blank=True)
    request_id = models.UUIDField(null=True, blank=True)
    request_path = models.CharField(max_length=500, null=True, blank=True)
    request_method = models.CharField(max_length=10, null=True, blank=True)
    response_status = models.IntegerField(null=True, blank=True)
    changes = models.JSONField(
        null=True, blank=True, encoder=DjangoJSONEncoder, db_comment='{field: {"old": ..., "new": ...}}'
    )
    metadata = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    objects = AuditLogQuerySet.as_manager()

    class Meta:
        db_table = "audit_logs"
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        ordering = ["-timestamp"]
        constraints = [
            models.CheckConstraint(condition=Q(action__in=Action.values), name="audit_logs_action_valid"),
        ]
        indexes = [
            # Seed ix_audit_logs_timestamp: newest-first pages, date ranges, retention pruning.
            models.Index(fields=["timestamp"], name="ix_audit_logs_timestamp"),
            # "What did this actor do", newest first (the admin index's recent actions, the
            # user_id filter). Replaces the seed's ix_audit_logs_user_id (user_id alone), which
            # left a staff member with 100,000 older rows to a 100 ms backward scan of the
            # timestamp index for their 10 latest (measured on 1,000,000 rows).
            models.Index(fields=["user_id", "timestamp"], name="ix_audit_logs_user_ts"),
            # Seed ix_audit_logs_action: the action filter.
            models.Index(fields=["action"], name="ix_audit_logs_action"),
            # Seed ix_audit_logs_resource_type: the resource type filter.
            models.Index(fields=["resource_type"], name="ix_audit_logs_resource_type"),
            # Seed ix_audit_logs_request_id: every row of one request (request_id search).
            models.Index(fields=["request_id"], name="ix_audit_logs_request_id"),
            # Seed ix_audit_logs_user_action: an actor's actions of one kind.
            models.Index(fields=["user_id", "action"], name="ix_audit_logs_user_action"),
            # The history of one object, newest first in keyset pages (the admin's History
            # page; resource_id search). Replaces the seed's ix_audit_logs_resource (type, id):
            # with it, the first page of an object holding 100,000 older rows cost 190 ms
            # (a sort, or a backward scan of the timestamp index); with timestamp, 0.1 ms at
            # any depth (measured on 1,000,000 rows).
            models.Index(fields=["resource_type", "resource_id", "timestamp"], name="ix_audit_logs_resource_ts"),
            # Seed ix_audit_logs_timestamp_action: action filter on a date range.
            models.Index(fields=["timestamp", "action"], name="ix_audit_logs_ts_action"),
            # Seed ix_audit_logs_timestamp_user: an actor's activity on a date range.
            models.Index(fields=["timestamp", "user_id"], name="ix_audit_logs_ts_user"),
            # Seed ix_audit_logs_timestamp_resource: resource type filter on a date range.
            models.Index(fields=["timestamp", "resource_type"], name="ix_audit_logs_ts_resource"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.resource_type} {self.resource_id or ''}".strip()

    def __repr__(self) -> str:
        return (
            f"AuditLog(id={self.id}, timestamp={self.timestamp.isoformat() if self.timestamp else None}, "
            f"user_id={self.user_id}, action={self.action}, resource_type={self.resource_type}, "
            f"resource_id={self.resource_id})"
        )


class AuditDay(models.Model):
    """How many audit rows of one action a settled day holds, or (``action`` NULL) of all.

    Written once per day by ``audit.activity`` (``config.db.daily``), never updated; the admin's
    dashboard reads 30 of these days instead of a month of audit rows. Counts as written: a
    later prune does not change them.
    """

    day = models.DateField()
    action = models.CharField(max_length=50, null=True, blank=True, db_comment="NULL: the day's total")
    count = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "audit_log_days"
        ordering = ["day"]
        constraints = [
            # Serves the dashboard's reads (a range of days) and makes a second fill a no-op.
            models.UniqueConstraint(fields=["day", "action"], name="audit_log_days_day_action_uniq"),
            models.UniqueConstraint(fields=["day"], condition=Q(action__isnull=True), name="audit_log_days_total_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.action or 'all actions'}: {self.count}"
