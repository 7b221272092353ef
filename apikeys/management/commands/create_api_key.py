"""Create an API key for a user and print the raw key, alone, on the last line of output.

    python manage.py create_api_key --email alice@example.com --name ci \
        [--scopes read,write] [--tier pro] [--expires-in-days 90]

The key is shown only this once; the database keeps its SHA-256 hash. The tier defaults to
`free`, like the API. Scopes must be ones the owner may use (admin needs an admin user).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import User
from apikeys.models import APIKey
from apikeys.services import api_key_create
from config.context import system_actor
from config.errors import DomainError


class Command(BaseCommand):
    help = "Create an API key for a user; prints the raw key alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The owner's email (case-insensitive).")
        parser.add_argument("--name", required=True, help="A name to recognise the key by.")
        parser.add_argument("--scopes", default="read", help="Comma-separated: read, write, admin (default: read).")
        parser.add_argument("--tier", default=APIKey.Tier.FREE, choices=APIKey.Tier.values, help="Rate limit tier.")
        parser.add_argument(
            "--expires-in-days", type=int, default=None, help="Days until the key expires (default: never)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.with_email(options["email"]).first()
        if user is None:
            raise CommandError(f"no live user with email {options['email']!r}")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be at least 1")
        expires_at = timezone.now() + timedelta(days=days) if days else None
        try:
            with system_actor("create_api_key"):
                api_key, raw = api_key_create(
                    actor=None,
                    owner=user,
                    name=options["name"],
                    scopes=scopes,
                    rate_limit_tier=options["tier"],
                    expires_at=expires_at,
                )
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"Created API key {api_key.key_hint} ({', '.join(api_key.scopes)}; {api_key.rate_limit_tier}; "
            f"expires {api_key.expires_at.isoformat() if api_key.expires_at else 'never'}) for {user.email}. "
            "It is shown once, below:"
        )
        self.stdout.write(raw)
