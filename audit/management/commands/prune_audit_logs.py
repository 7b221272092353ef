"""Delete audit rows older than DAYS (default AUDIT_LOG_RETENTION_DAYS, 90 like the original).

audit_logs is append-only: a database trigger refuses UPDATE and DELETE, except a DELETE in a
transaction that ran ``SET LOCAL audit.allow_prune = 'on'``, which only this command does. Rows
go oldest first, in batches that commit one by one. With ``--archive PATH`` each batch is first
appended to PATH as JSON Lines (one row per line, every column) and flushed to disk before its
DELETE commits, so a row is never lost: at worst, after a crash, archived twice.

When anything was pruned, one summary row is written afterwards (DELETE, resource_type
``audit_log``, metadata with the count, cutoff and archive path; actor
``system:prune_audit_logs``); it is newer than the cutoff, so the next prune keeps it.

    python manage.py prune_audit_logs [--older-than 90] [--archive audit-2025-01.jsonl] [--dry-run]
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from audit.services import audit_log_prune
from config.context import system_actor

logger = logging.getLogger("ops")


class Command(BaseCommand):
    help = "Delete (optionally archiving first) audit rows older than --older-than DAYS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            default=None,
            metavar="DAYS",
            help="Delete rows older than now - DAYS (default: AUDIT_LOG_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--archive", metavar="PATH", default=None, help="Append the rows to this JSON Lines file before deleting."
        )
        parser.add_argument("--dry-run", action="store_true", help="Count the rows that would go; delete nothing.")
        parser.add_argument("--batch-size", type=int, default=1000, help="Rows per transaction (default 1000).")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"] if options["older_than"] is not None else settings.AUDIT_LOG_RETENTION_DAYS
        if days < 1:
            raise CommandError("--older-than must be at least 1 day")
        batch_size = max(1, options["batch_size"])
        dry_run = options["dry_run"]
        verbosity = options["verbosity"]
        cutoff = timezone.now() - timedelta(days=days)

        def progress(pruned: int) -> None:
            if verbosity >= 2 or (verbosity >= 1 and pruned >= batch_size):
                self.stdout.write(f"  ... {pruned} row(s) pruned so far")

        archive = None
        if options["archive"] and not dry_run:
            try:
                # Appended, never truncated: rerunning with the same path keeps earlier rows.
                # 0600: audit rows carry addresses and changed values.
                archive = open(  # noqa: SIM115 - closed in the finally below
                    options["archive"], "a", encoding="utf-8", opener=lambda path, flags: os.open(path, flags, 0o600)
                )
            except OSError as exc:
                raise CommandError(f"cannot open the archive {options['archive']}: {exc.strerror}") from None
        try:
            with system_actor("prune_audit_logs"):
                count = audit_log_prune(
                    before=cutoff, batch_size=batch_size, archive=archive, dry_run=dry_run, progress=progress
                )
        finally:
            if archive is not None:
                archive.close()
        logger.info(
            "prune_audit_logs: %s %d row(s) older than %d day(s)",
            "would delete" if dry_run else "deleted",
            count,
            days,
            extra={"command": "prune_audit_logs", "dry_run": dry_run, "older_than_days": days, "count": count},
        )
        if verbosity >= 1:
            where = f", archived to {options['archive']}" if archive is not None else ""
            if dry_run:
                self.stdout.write(f"dry run: {count} audit row(s) older than {days} day(s) would be deleted")
            else:
                self.stdout.write(self.style.SUCCESS(f"deleted {count} audit row(s) older than {days} day(s){where}"))
