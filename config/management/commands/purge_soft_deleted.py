"""Hard-delete what was soft-deleted more than DAYS ago: users (with all their API keys and
sessions, whenever those were deleted), then sessions (with their messages) and revoked API keys
on their own.

Every purged user, key and session gets an audit row (DELETE, ``{"operation": "purge"}``, actor
``system:purge_soft_deleted``) in the same transaction as its batch; audit_logs itself is never
touched (it has no foreign key to users). Batches of ``--batch-size`` rows commit one by one; a
row being restored at that moment is skipped. A user soft-deleted less than DAYS ago stays, and
so do its keys and sessions.

    python manage.py purge_soft_deleted --older-than 30 [--dry-run] [--batch-size 500]
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.services import user_purge_deleted
from agent_sessions.services import session_purge_deleted
from apikeys.services import api_key_purge_deleted
from config.context import system_actor

logger = logging.getLogger("ops")


class Command(BaseCommand):
    help = "Hard-delete users, sessions and API keys soft-deleted more than --older-than DAYS ago."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", type=int, required=True, metavar="DAYS", help="Purge rows soft-deleted before now - DAYS."
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would be purged; delete nothing.")
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"]
        if days < 0:
            raise CommandError("--older-than must be 0 or more days")
        batch_size = max(1, options["batch_size"])
        dry_run = options["dry_run"]
        verbosity = options["verbosity"]
        cutoff = timezone.now() - timedelta(days=days)

        def progress(what: str) -> Any:
            def report(done: Counter[str] | int) -> None:
                count = done[what] if isinstance(done, Counter) else done
                if verbosity >= 2 or (verbosity >= 1 and count >= batch_size):
                    self.stdout.write(f"  ... {count} {what}(s) purged so far")

            return report

        common = {"deleted_before": cutoff, "batch_size": batch_size, "dry_run": dry_run}
        with system_actor("purge_soft_deleted"):
            # Users first: their keys and sessions go with them, whatever their own deleted_at.
            users = user_purge_deleted(**common, progress=progress("user"))
            sessions = session_purge_deleted(**common, progress=progress("session"))
            keys = api_key_purge_deleted(**common, progress=progress("api_key"))

        counts = {
            "users": users["user"],
            "api_keys": users["api_key"] + keys,
            "sessions": users["session"] + sessions["session"],
            "messages": users["message"] + sessions["message"],
        }
        logger.info(
            "purge_soft_deleted: %s %d user(s), %d API key(s), %d session(s), %d message(s)",
            "would purge" if dry_run else "purged",
            *counts.values(),
            extra={"command": "purge_soft_deleted", "dry_run": dry_run, "older_than_days": days, **counts},
        )
        if verbosity >= 1:
            summary = (
                f"{counts['users']} user(s) (with {users['api_key']} API key(s), {users['session']} session(s)), "
                f"{sessions['session']} more session(s), {keys} more API key(s); "
                f"{counts['messages']} message(s) in all; soft-deleted before {cutoff:%Y-%m-%d %H:%M} UTC"
            )
            if dry_run:
                self.stdout.write(f"dry run: would purge {summary}")
            else:
                self.stdout.write(self.style.SUCCESS(f"purged {summary}"))
