"""Soft delete, shared by users, API keys and sessions.

* ``Model.objects`` hides soft-deleted rows; ``Model.all_objects`` shows them.
* ``queryset.delete()`` soft-deletes every row in one UPDATE; ``hard_delete()`` is explicit.
* Uniqueness that must hold among live rows only is a partial unique constraint
  (``condition=Q(deleted_at__isnull=True)``) on the model that needs it.

Related-object access (``key.user``) goes through Django's base manager, which does not
filter, so a soft-deleted owner is still reachable from the rows that point at it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, Self

from django.db import models
from django.utils import timezone


class SoftDeleteQuerySet(models.QuerySet):
    def alive(self) -> Self:
        return self.filter(deleted_at__isnull=True)

    def dead(self) -> Self:
        return self.filter(deleted_at__isnull=False)

    def soft_delete_values(self) -> dict[str, Any]:
        """Columns one soft-delete UPDATE sets; models extend this (a user is also deactivated)."""
        now = timezone.now()
        return {"deleted_at": now, "updated_at": now}

    def delete(self) -> int:  # type: ignore[override]
        """Soft-delete the live rows of this queryset in one UPDATE; return how many."""
        return self.alive().update(**self.soft_delete_values())

    delete.alters_data = True
    delete.queryset_only = True

    def hard_delete(self) -> tuple[int, dict[str, int]]:
        return super().delete()

    hard_delete.alters_data = True
    hard_delete.queryset_only = True


class SoftDeleteManager(models.Manager.from_queryset(SoftDeleteQuerySet)):
    """The default manager: live rows only."""

    def get_queryset(self) -> SoftDeleteQuerySet:
        return super().get_queryset().filter(deleted_at__isnull=True)


class AllObjectsManager(models.Manager.from_queryset(SoftDeleteQuerySet)):
    """Every row, soft-deleted or not."""


class SoftDeleteModel(models.Model):
    deleted_at = models.DateTimeField(
        null=True, blank=True, db_comment="When the record was soft-deleted; NULL while live"
    )

    objects = SoftDeleteManager()
    all_objects = AllObjectsManager()

    class Meta:
        abstract = True

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def soft_delete(self) -> None:
        """Mark this row deleted (idempotent: a second call keeps the first timestamp)."""
        if self.deleted_at is None:
            self.deleted_at = timezone.now()
            self.save(update_fields=["deleted_at", "updated_at"])

    def restore(self) -> None:
        if self.deleted_at is not None:
            self.deleted_at = None
            self.save(update_fields=["deleted_at", "updated_at"])

    def delete(self, using: str | None = None, keep_parents: bool = False) -> tuple[int, dict[str, int]]:
        """Instance delete is a soft delete too, so no code path removes a row by accident."""
        already = self.deleted_at is not None
        self.soft_delete()
        return (0, {}) if already else (1, {self._meta.label: 1})

    def hard_delete(self) -> tuple[int, dict[str, int]]:
        return super().delete()


def purge_in_batches(
    run_batch: Callable[[uuid.UUID | None], tuple[list[uuid.UUID], Counter[str]]],
    *,
    batch_size: int,
    progress: Callable[[Counter[str]], None] | None = None,
) -> Counter[str]:
    """Drive a purge one keyset batch at a time until a batch comes back short.

    ``run_batch(after)`` purges up to ``batch_size`` rows with primary keys above ``after``, in
    its own transaction, and returns their ids (in key order) and what it deleted; ``progress``
    gets the running totals after each non-empty batch. No transaction spans batches.
    """
    total: Counter[str] = Counter()
    after: uuid.UUID | None = None
    while True:
        ids, counts = run_batch(after)
        total.update(counts)
        if ids and progress is not None:
            progress(total)
        if len(ids) < batch_size:
            return total
        after = ids[-1]
