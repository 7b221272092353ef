"""Forget idempotency keys older than HOURS (default IDEMPOTENCY_KEY_TTL_HOURS, 24).

A retry carrying a key this old is treated as a new request. Keys go oldest first, in batches
that commit one by one, so the command is safe to run from cron, even when two runs overlap.

    python manage.py prune_idempotency_keys [--older-than HOURS] [--dry-run] [--batch-size 1000]
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from idempotency.services import idempotency_keys_prune

logger = logging.getLogger("ops")


class Command(BaseCommand):
    help = "Delete idempotency keys older than --older-than HOURS (default IDEMPOTENCY_KEY_TTL_HOURS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=float, default=None, metavar="HOURS", help="Default: the TTL.")
        parser.add_argument("--dry-run", action="store_true", help="Count the keys that would go; delete nothing.")
        parser.add_argument("--batch-size", type=int, default=1000, help="Keys per transaction (default 1000).")

    def handle(self, *args: Any, **options: Any) -> None:
        ttl = settings.IDEMPOTENCY_KEY_TTL_HOURS
        hours = options["older_than"] if options["older_than"] is not None else ttl
        if hours < ttl:
            raise CommandError(
                f"--older-than must be at least IDEMPOTENCY_KEY_TTL_HOURS ({ttl:g}): keys are promised that long"
            )
        batch_size = max(1, options["batch_size"])
        verbosity = options["verbosity"]

        def progress(pruned: int) -> None:
            if verbosity >= 2 or (verbosity >= 1 and pruned >= batch_size):
                self.stdout.write(f"  ... {pruned} key(s) pruned so far")

        count = idempotency_keys_prune(
            before=timezone.now() - timedelta(hours=hours),
            batch_size=batch_size,
            dry_run=options["dry_run"],
            progress=progress,
        )
        logger.info(
            "prune_idempotency_keys: %s %d key(s)",
            "would delete" if options["dry_run"] else "deleted",
            count,
            extra={
                "command": "prune_idempotency_keys",
                "dry_run": options["dry_run"],
                "count": count,
                "older_than_hours": hours,
            },
        )
        if verbosity >= 1:
            verb = "would be deleted" if options["dry_run"] else "deleted"
            self.stdout.write(f"{count} idempotency key(s) older than {hours:g} h {verb}")
