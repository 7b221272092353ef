"""The one writer of audit rows. It runs inside the caller's transaction: a change that rolls
back takes its audit row with it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.utils import timezone

from audit.context import current
from audit.models import AuditLog

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
