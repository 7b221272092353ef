"""Idempotency keys: the answer a mutation gave, kept so that its retry gets the same answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import models, router
from django.utils import timezone

from config.db.raw_select import ModelColumns, column_name, statement_cursor


class IdempotencyKeyManager(models.Manager["IdempotencyKey"]):
    def record(self, *, user_id: uuid.UUID, key: str, fingerprint: str, status_code: int, response_body: str) -> bool:
        """Insert the key with its answer unless this user already has it; True if inserted.

        ``INSERT ... ON CONFLICT DO NOTHING``: against a key that another transaction inserted
        and has not committed yet, PostgreSQL waits for that transaction, then does nothing if it
        committed. So of two concurrent requests with one key, exactly one records it, and the
        other learns so only once the first's answer is readable. (``bulk_create`` with
        ``ignore_conflicts`` cannot say which happened.)
        """
        t = ModelColumns(IdempotencyKey)
        col = column_name
        names = ["user", "key", "fingerprint", "status_code", "response_body", "created_at"]
        sql = (
            f"INSERT INTO {t.table} ({', '.join(col(IdempotencyKey, n) for n in names)}) "  # noqa: S608 (identifiers from model metadata)
            f"VALUES (%s, %s, %s, %s, %s, %s) "
            f"ON CONFLICT ({col(IdempotencyKey, 'user')}, {col(IdempotencyKey, 'key')}) DO NOTHING "
            f"RETURNING {col(IdempotencyKey, 'id')}"
        )
        with statement_cursor(router.db_for_write(IdempotencyKey)) as cursor:
            cursor.execute(sql, [user_id, key, fingerprint, status_code, response_body, timezone.now()])
            return cursor.fetchone() is not None


@dataclass(frozen=True)
class KeyClaim:
    """A key to record with a mutation that records it itself (the append statement)."""

    user_id: uuid.UUID
    key: str
    fingerprint: str


class IdempotencyKeyTaken(Exception):
    """The key is already recorded (claimed by an append statement that lost the race)."""


# The unique constraint whose violation means "this owner already used this key".
UNIQUE_KEY = "idempotency_keys_user_key_uniq"


class IdempotencyKey(models.Model):
    """A key an API client sent with a mutation (``Idempotency-Key``), scoped to its owner, and
    the answer it got. Written with its mutation, atomically: in the mutation's transaction, or
    (appends) claimed by the append's own statement and answered by one more, so a key exists
    exactly when its mutation committed. ``status_code`` NULL: committed, answer not yet
    recorded. Only successful answers are kept: a refusal writes nothing, and its retry is
    judged afresh."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, db_comment="sha256 of the method, path and parsed body")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, db_comment="NULL: the answer is on its way")
    response_body = models.TextField(null=True, blank=True, db_comment="the JSON answer, as sent")
    created_at = models.DateTimeField(default=timezone.now)

    objects = IdempotencyKeyManager()

    class Meta:
        db_table = "idempotency_keys"
        constraints = [
            # Also the index of every lookup: one owner's key.
            models.UniqueConstraint(fields=["user", "key"], name=UNIQUE_KEY),
        ]
        indexes = [
            # prune_idempotency_keys: the keys older than the TTL.
            models.Index(fields=["created_at"], name="ix_idempotency_keys_created"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code})"
