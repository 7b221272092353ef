"""The one writer of audit rows. It runs inside the caller's transaction: a change that rolls
back takes its audit row with it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TextIO

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditLog
from config.context import current
from config.db.batches import in_keyset_batches

# Field names whose values never reach an audit row.
SECRET_FIELDS = frozenset({"password", "hashed_password", "key", "raw_key", "key_hash", "token", "secret"})
MASK = "***"


def mask_secrets(changes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if changes is None:
        return None
    masked: dict[str, Any] = {}
    for name, value in changes.items():
        if name in SECRET_FIELDS:
            masked[name] = {"old": MASK, "new": MASK} if isinstance(value, Mapping) else MASK
        else:
            masked[name] = value
    return masked


def diff(before: Mapping[str, Any], after: Mapping[str, Any], fields: Iterable[str] | None = None) -> dict[str, Any]:
    """``{field: {"old": ..., "new": ...}}`` for the fields whose values differ."""
    names = fields if fields is not None else after.keys()
    return {
        name: {"old": before.get(name), "new": after.get(name)} for name in names if before.get(name) != after.get(name)
    }


def snapshot(instance: Any, fields: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(instance, name) for name in fields}


def audit_log_record(
    *,
    action: str,
    resource_type: str,
    resource_id: Any = None,
    actor: Any = None,
    changes: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    response_status: int | None = None,
) -> AuditLog:
    """Write one audit row with the current request's (or system actor's) context.

    ``actor`` is a user, a user id, or None (system or anonymous). Secret fields in
    ``changes`` are masked.
    """
    context = current()
    actor_id: uuid.UUID | None
    if actor is None:
        actor_id = None
    elif isinstance(actor, uuid.UUID):
        actor_id = actor
    else:
        actor_id = getattr(actor, "pk", None)
    meta = dict(metadata or {})
    if context is not None and context.system_actor:
        meta.setdefault("actor", context.system_actor)
    if context is not None and context.api_key_id is not None:
        # Which of the actor's keys made the request: its id and display hint, never the key.
        meta.setdefault("api_key_id", str(context.api_key_id))
        meta.setdefault("api_key_hint", context.api_key_hint)
    return AuditLog.objects.create(
        timestamp=timezone.now(),
        user_id=actor_id,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        ip_address=context.ip_address if context else None,
        user_agent=context.user_agent if context else None,
        request_id=context.request_id if context else None,
        request_path=context.path if context else None,
        request_method=context.method if context else None,
        response_status=response_status
        if response_status is not None
        else (context.response_status if context else None),
        changes=mask_secrets(changes),
        metadata=meta or None,
    )


# --- retention (manage.py prune_audit_logs) ---------------------------------------------------

PRUNE_RESOURCE = "audit_log"


class _ArchiveEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder cuts datetimes to milliseconds; an archive keeps every microsecond."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        return super().default(o)


def _archive_line(row: Mapping[str, Any]) -> str:
    return json.dumps(dict(row), cls=_ArchiveEncoder, ensure_ascii=False, separators=(",", ":")) + "\n"


@transaction.atomic
def _audit_log_prune_batch(
    *, before: datetime, after: tuple[datetime, uuid.UUID] | None, batch_size: int, archive: TextIO | None
) -> tuple[list[tuple[datetime, uuid.UUID]], Counter[str]]:
    """Delete (after archiving) the oldest ``batch_size`` rows older than ``before`` that sort
    after ``after`` by (timestamp, id); return their keys."""
    fields = [f.attname for f in AuditLog._meta.concrete_fields]
    candidates = AuditLog.objects.filter(timestamp__lt=before)
    if after is not None:
        candidates = candidates.filter(Q(timestamp__gt=after[0]) | Q(timestamp=after[0], pk__gt=after[1]))
    # SKIP LOCKED: two prunes at once take different rows, so no row is archived twice.
    rows = list(candidates.order_by("timestamp", "pk").select_for_update(skip_locked=True).values(*fields)[:batch_size])
    if not rows:
        return [], Counter()
    if archive is not None:
        archive.writelines(_archive_line(row) for row in rows)
        archive.flush()
        with contextlib.suppress(AttributeError, OSError, io.UnsupportedOperation):
            os.fsync(archive.fileno())
        # The rows are on disk before the DELETE can commit: a crash now leaves them in both
        # places (archived again next run), never in neither.
    deleted = AuditLog.objects.filter(pk__in=[row["id"] for row in rows]).prune()
    return [(row["timestamp"], row["id"]) for row in rows], Counter({"audit_log": deleted})


def audit_log_prune(
    *,
    before: datetime,
    batch_size: int = 1000,
    archive: TextIO | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete audit rows older than ``before``, oldest first, in batches that each commit on
    their own; the one sanctioned way rows leave audit_logs. Returns how many went (with
    ``dry_run``, how many would).

    ``archive`` (a text file) receives each row as a JSON line before its batch is deleted.
    When anything was pruned, one summary row (DELETE, resource_type ``audit_log``, metadata
    with the count and cutoff) is written afterwards: it is newer than the cutoff, so it
    survives this prune and records it.
    """
    if dry_run:
        return AuditLog.objects.filter(timestamp__lt=before).count()
    total = in_keyset_batches(
        lambda after: _audit_log_prune_batch(before=before, after=after, batch_size=batch_size, archive=archive),
        batch_size=batch_size,
        progress=None if progress is None else lambda running: progress(running["audit_log"]),
    )
    pruned = total["audit_log"]
    if pruned:
        with transaction.atomic():
            audit_log_record(
                action=AuditLog.Action.DELETE,
                resource_type=PRUNE_RESOURCE,
                metadata={
                    "operation": "prune",
                    "count": pruned,
                    "cutoff": before.isoformat(),
                    "archive": getattr(archive, "name", None) if archive is not None else None,
                },
            )
    return pruned


def audit_log_purged(*, resource_type: str, rows: Iterable[tuple[Any, Any, datetime | None]]) -> None:
    """One DELETE row per hard-deleted ``(pk, owner id, deleted_at)``, marked as a purge."""
    for pk, user_id, deleted_at in rows:
        audit_log_record(
            action=AuditLog.Action.DELETE,
            resource_type=resource_type,
            resource_id=pk,
            actor=None,
            metadata={
                "operation": "purge",
                "user_id": str(user_id),
                "deleted_at": deleted_at.isoformat() if deleted_at else None,
            },
        )
