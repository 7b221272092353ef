"""Make sure the admin site has someone who can log in (used by `make run`).

If no live superuser exists, creates one (DJANGO_SUPERUSER_EMAIL, default admin@example.com)
with DJANGO_SUPERUSER_PASSWORD or a generated password, and prints the login once. The
password is stored only as its Argon2 hash; if you lose it, run
`manage.py changepassword <email>`. If a superuser exists, prints who can log in.

    python manage.py bootstrap_admin [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.models import User
from accounts.services import user_create
from config.context import system_actor


class Command(BaseCommand):
    help = "Create the first superuser if there is none, and print how to log into the admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Where the service listens.")

    def handle(self, *args: Any, **options: Any) -> None:
        admin_url = options["url"].rstrip("/") + "/admin/"
        existing = list(User.objects.filter(is_superuser=True, is_active=True).values_list("email", flat=True)[:3])
        if existing:
            self.stdout.write(
                f"Admin: {admin_url}  log in as {', '.join(existing)} "
                "(password printed when it was created; reset with `.venv/bin/python manage.py changepassword <email>`)"
            )
            return
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "admin@example.com")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        with system_actor("bootstrap_admin"):
            user_create(
                actor=None,
                email=email,
                name=os.environ.get("DJANGO_SUPERUSER_NAME", "Administrator"),
                password=password,
                roles=["super_admin"],
                is_staff=True,
                is_superuser=True,
            )
        self.stdout.write(self.style.SUCCESS(f"Created the first admin. Admin: {admin_url}"))
        self.stdout.write(f"  email:    {email}")
        self.stdout.write(f"  password: {password}   (shown once; only its hash is stored)")
