"""Close active sessions that have expired: past their ``expires_at``, or idle (no message, no
status change) for longer than SESSION_EXPIRY_HOURS (default 24, the original's value).

Each is marked ``completed`` with ``metadata["completion_reason"] = "expired"`` and gets one
audit row (actor ``system:expire_sessions``). Work goes in batches that commit on their own,
and a session locked by someone else is skipped (the next run takes it), so the command is
safe to run from cron every minute, even when two runs overlap.

    python manage.py expire_sessions [--dry-run] [--batch-size 500]
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from agent_sessions.services import session_expire_due
from config.context import system_actor

logger = logging.getLogger("ops")


class Command(BaseCommand):
    help = "Complete active sessions past expires_at or idle longer than SESSION_EXPIRY_HOURS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count the sessions due; change nothing.")
        parser.add_argument("--batch-size", type=int, default=500, help="Sessions per transaction (default 500).")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = max(1, options["batch_size"])
        verbosity = options["verbosity"]
        hours = settings.SESSION_EXPIRY_HOURS

        def progress(closed: int) -> None:
            if verbosity >= 2 or (verbosity >= 1 and closed >= batch_size):
                self.stdout.write(f"  ... {closed} closed so far")

        with system_actor("expire_sessions"):
            count = session_expire_due(batch_size=batch_size, dry_run=options["dry_run"], progress=progress)
        logger.info(
            "expire_sessions: %s %d session(s)",
            "would close" if options["dry_run"] else "closed",
            count,
            extra={"command": "expire_sessions", "dry_run": options["dry_run"], "count": count, "idle_hours": hours},
        )
        if verbosity >= 1:
            if options["dry_run"]:
                self.stdout.write(f"dry run: {count} session(s) would be closed as expired (idle limit {hours:g} h)")
            else:
                self.stdout.write(self.style.SUCCESS(f"closed {count} expired session(s) (idle limit {hours:g} h)"))
