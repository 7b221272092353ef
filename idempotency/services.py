"""Idempotent mutations (``Idempotency-Key``) and the sweep that forgets old keys."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from django.db import transaction

from config.db.batches import in_keyset_batches
from idempotency.models import IdempotencyKey


@transaction.atomic
def _prune_batch(*, before: datetime, after: int | None, batch_size: int) -> tuple[list[int], Counter[str]]:
    candidates = IdempotencyKey.objects.filter(created_at__lt=before).order_by("pk")
    if after is not None:
        candidates = candidates.filter(pk__gt=after)
    ids = list(candidates.values_list("pk", flat=True)[:batch_size])
    if not ids:
        return [], Counter()
    deleted, _ = IdempotencyKey.objects.filter(pk__in=ids).delete()
    return ids, Counter({"key": deleted})


def idempotency_keys_prune(
    *,
    before: datetime,
    batch_size: int = 1000,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete idempotency keys recorded before ``before``, in batches that commit one by one.
    Returns how many went (with ``dry_run``, how many would). Not audited: keys are a cache of
    answers, and the mutations they answered have their own record."""
    if dry_run:
        return IdempotencyKey.objects.filter(created_at__lt=before).count()
    total = in_keyset_batches(
        lambda after: _prune_batch(before=before, after=after, batch_size=batch_size),
        batch_size=batch_size,
        progress=None if progress is None else lambda running: progress(running["key"]),
    )
    return total["key"]
