"""Soft delete, shared by users, API keys and sessions.

* ``Model.objects`` hides soft-deleted rows; ``Model.all_objects`` shows them.
* ``LIVE`` is the one definition of a live row (``deleted_at IS NULL``): ``alive()``, the default
  manager and the hand-written statements (through ``config.db.raw_select.where_sql``) all use it.
* ``soft_delete()`` (on a queryset: one UPDATE; on an instance: that row) and ``hard_delete()``
  say what they do. ``delete()`` is refused on these models, so that no code path removes a row,
  or merely hides one, because it guessed what ``delete()`` means here.
* Uniqueness that must hold among live rows only is a partial unique constraint
  (``condition=LIVE``) on the model that needs it.

Related-object access (``key.user``) goes through Django's base manager, which does not filter,
so a soft-deleted owner is still reachable from the rows that point at it.
"""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn, Self, cast

from django.db import models
from django.utils import timezone

LIVE = models.Q(deleted_at__isnull=True)


class AmbiguousDelete(TypeError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what}.delete() is ambiguous on a soft-deletable model: call soft_delete() or hard_delete()")


class SoftDeleteQuerySet(models.QuerySet):
    def alive(self) -> Self:
        return self.filter(LIVE)

    def dead(self) -> Self:
        return self.exclude(LIVE)

    def soft_delete_values(self) -> dict[str, Any]:
        """Columns one soft-delete UPDATE sets; models extend this (a user is also deactivated)."""
        now = timezone.now()
        return {"deleted_at": now, "updated_at": now}

    def soft_delete(self) -> int:
        """Soft-delete the live rows of this queryset in one UPDATE; return how many. No audit row:
        the API, the admin and the commands go through the app's services, which write one."""
        return self.alive().update(**self.soft_delete_values())

    soft_delete.alters_data = True  # type: ignore[attr-defined]
    soft_delete.queryset_only = True  # type: ignore[attr-defined]

    def delete(self) -> NoReturn:
        raise AmbiguousDelete("QuerySet")

    def hard_delete(self) -> tuple[int, dict[str, int]]:
        """Remove the rows (and, by the ORM's cascade, what points at them)."""
        return super().delete()

    hard_delete.alters_data = True  # type: ignore[attr-defined]
    hard_delete.queryset_only = True  # type: ignore[attr-defined]


_SoftDeleteManagerBase = models.Manager.from_queryset(SoftDeleteQuerySet)


class SoftDeleteManager(_SoftDeleteManagerBase):
    """The default manager: live rows only."""

    def get_queryset(self) -> SoftDeleteQuerySet:
        return cast(SoftDeleteQuerySet, super().get_queryset().filter(LIVE))


class SoftDeleteModel(models.Model):
    deleted_at = models.DateTimeField(
        null=True, blank=True, db_comment="When the record was soft-deleted; NULL while live"
    )

    objects: ClassVar[SoftDeleteManager] = SoftDeleteManager()
    all_objects: ClassVar[models.Manager[Any]] = _SoftDeleteManagerBase()

    class Meta:
        abstract = True

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def soft_delete(self) -> None:
        """Mark this row deleted (idempotent: a second call keeps the first timestamp). Writes no
        audit row: the API, the admin and the commands use the app's services."""
        if self.deleted_at is None:
            self.deleted_at = timezone.now()
            self.save(update_fields=["deleted_at", "updated_at"])

    def restore(self) -> None:
        """Undo a soft delete. Writes no audit row (the services' restore does)."""
        if self.deleted_at is not None:
            self.deleted_at = None
            self.save(update_fields=["deleted_at", "updated_at"])

    def delete(self, using: str | None = None, keep_parents: bool = False) -> NoReturn:
        raise AmbiguousDelete(type(self).__name__)

    def hard_delete(self) -> tuple[int, dict[str, int]]:
        return super().delete()
