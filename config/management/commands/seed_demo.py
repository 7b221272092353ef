"""Fill a development database with a small, realistic cast (idempotent).

Creates alice and bob (ordinary users) and an admin, an API key each (the raw keys are printed
once, when created), two sessions per ordinary user with a short conversation each, and the
audit rows all of that implies. Rerunning it finds what exists and creates nothing twice.

    python manage.py seed_demo
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import User
from accounts.services import user_create
from agent_sessions.models import Session
from agent_sessions.services import session_append_message, session_create
from apikeys.models import APIKey
from apikeys.services import api_key_create
from config.context import system_actor

CAST: list[dict[str, Any]] = [
    {
        "email": "alice@demo.example",
        "name": "Alice Demo",
        "roles": ["user"],
        "groups": ["research"],
        "scopes": ["read", "write"],
        "tier": "pro",
    },
    {
        "email": "bob@demo.example",
        "name": "Bob Demo",
        "roles": ["user"],
        "groups": ["support"],
        "scopes": ["read", "write"],
        "tier": "free",
    },
    {
        "email": "admin@demo.example",
        "name": "Admin Demo",
        "roles": ["admin"],
        "groups": ["platform"],
        "scopes": ["read", "write", "admin"],
        "tier": "enterprise",
    },
]
CONVERSATIONS = [
    (
        "code-assistant",
        "Debug a failing migration",
        [
            ("user", "My migration fails with a duplicate index error.", 12),
            ("assistant", "Two index definitions share a name; drop the index=True on the column.", 18),
        ],
    ),
    (
        "research-agent",
        "Summarise connection pooling options",
        [
            ("system", "You are a concise research assistant.", 8),
            ("user", "Compare PgBouncer with an in-process pool.", 9),
            ("assistant", "An in-process pool is per worker; PgBouncer pools across processes.", 15),
        ],
    ),
]
DEMO_KEY_NAME = "demo key"


class Command(BaseCommand):
    help = "Seed a development database with demo users, keys, sessions, messages and audit rows."

    def handle(self, *args: Any, **options: Any) -> None:
        created = {"users": 0, "keys": 0, "sessions": 0, "messages": 0}
        with system_actor("seed_demo"), transaction.atomic():
            for spec in CAST:
                user = User.objects.with_email(spec["email"]).first()
                if user is None:
                    user = user_create(
                        actor=None, email=spec["email"], name=spec["name"], roles=spec["roles"], groups=spec["groups"]
                    )
                    created["users"] += 1
                if not APIKey.objects.filter(user=user, name=DEMO_KEY_NAME).exists():
                    _, raw = api_key_create(
                        actor=None, owner=user, name=DEMO_KEY_NAME, scopes=spec["scopes"], rate_limit_tier=spec["tier"]
                    )
                    created["keys"] += 1
                    self.stdout.write(f"API key for {spec['email']} (shown once): {raw}")
                if "admin" in spec["roles"]:
                    continue
                for agent_id, title, messages in CONVERSATIONS:
                    if Session.objects.filter(user=user, agent_id=agent_id, title=title).exists():
                        continue
                    session = session_create(actor=None, owner=user, agent_id=agent_id, title=title)
                    created["sessions"] += 1
                    for role, content, tokens in messages:
                        session_append_message(session_id=session.pk, role=role, content=content, token_count=tokens)
                        created["messages"] += 1
        summary = ", ".join(f"{count} {name}" for name, count in created.items())
        self.stdout.write(
            self.style.SUCCESS(
                f"seed_demo: created {summary}" if any(created.values()) else "seed_demo: already seeded, nothing to do"
            )
        )
