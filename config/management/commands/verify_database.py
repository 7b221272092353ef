"""Check that the configured database is ready to serve: the Django replacement for the seed's
scripts/verify_database.py.

Checks, in order: connectivity and server version; that the database was migrated at all and
no migration is unapplied; that the expected tables, indexes, constraints and the audit
append-only trigger exist; then prints the pool figures. Exits non-zero with a one-line reason
on the first failure.

    python manage.py verify_database
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from config.db.connection import pool_figures
from config.health import database_component

MINIMUM_SERVER_VERSION = 14
EXPECTED_TABLES = {
    "audit.AuditLog": "audit_logs",
    "accounts.User": "users",
    "apikeys.APIKey": "api_keys",
    "agent_sessions.Session": "sessions",
    "agent_sessions.Message": "session_messages",
}
TRIGGER = "audit_logs_append_only"


class Command(BaseCommand):
    help = "Verify connectivity, migrations, tables, indexes and the pool. Exits 1 on any failure."

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        try:
            self._check(connection)
        except DatabaseError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(f"database check failed: {first_line}") from None

    def _ok(self, message: str) -> None:
        self.stdout.write(self.style.SUCCESS("PASS ") + message)

    def _check(self, connection: Any) -> None:
        component = database_component()
        if component["status"] != "healthy":
            raise CommandError(f"cannot connect to the database: {component['error']}")
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version_num")
            version_num = int(cursor.fetchone()[0])
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
        if version_num // 10000 < MINIMUM_SERVER_VERSION:
            raise CommandError(f"PostgreSQL {version} is too old; {MINIMUM_SERVER_VERSION}+ is required")
        self._ok(f"connected in {component['latency_ms']} ms to PostgreSQL {version}")

        tables = set(connection.introspection.table_names())
        if "django_migrations" not in tables:
            raise CommandError("the database was never migrated (no django_migrations table); run manage.py migrate")
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
            raise CommandError(f"{len(plan)} unapplied migration(s): {names}; run manage.py migrate")
        self._ok("no unapplied migrations")

        missing_tables = [t for t in EXPECTED_TABLES.values() if t not in tables]
        if missing_tables:
            raise CommandError(f"missing table(s): {', '.join(missing_tables)}")
        self._ok(f"tables present: {', '.join(EXPECTED_TABLES.values())}")

        with connection.cursor() as cursor:
            cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
            indexes = {row[0] for row in cursor.fetchall()}
            cursor.execute("SELECT conname FROM pg_constraint")
            constraints = {row[0] for row in cursor.fetchall()}
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
            triggers = {row[0] for row in cursor.fetchall()}
        expected: list[str] = []
        for label in EXPECTED_TABLES:
            meta = apps.get_model(label)._meta
            expected += [index.name for index in meta.indexes]
            expected += [constraint.name for constraint in meta.constraints]
        missing = [name for name in expected if name not in indexes and name not in constraints]
        if missing:
            raise CommandError(f"missing index(es) or constraint(s): {', '.join(missing)}")
        self._ok(f"{len(expected)} named indexes and constraints present")
        if TRIGGER not in triggers:
            raise CommandError(f"the audit_logs append-only trigger ({TRIGGER}) is missing")
        self._ok("audit_logs is append-only (trigger present)")

        figures = pool_figures()
        summary = ", ".join(f"{k}={v}" for k, v in figures.items())
        self._ok(f"pool: {summary}")
        self.stdout.write(self.style.SUCCESS("database verified"))
