"""The abstract base every table of ours shares: a UUID primary key and timezone-aware stamps."""

from __future__ import annotations

import uuid

from django.db import models


class UUIDTimestampedModel(models.Model):
    # Generated in Python, like the original (uuid4, no server default).
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_comment="When the record was created")
    # auto_now covers save(); queryset.update() callers set updated_at themselves.
    updated_at = models.DateTimeField(auto_now=True, db_comment="When the record was last changed")

    class Meta:
        abstract = True
