from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


def _echo_sql(sender: Any, connection: Any, **kwargs: Any) -> None:
    # Django only logs SQL with DEBUG on; DB_ECHO_SQL=true asks for it in any mode.
    connection.force_debug_cursor = True


class ProjectConfig(AppConfig):
    """The project itself: settings-level wiring, health checks and verify_database."""

    name = "config"
    label = "config"
    verbose_name = "Project"

    def ready(self) -> None:
        from django.conf import settings

        import config.schema  # noqa: F401  (registers the OpenAPI security schemes)
        from config.database import after_migrate

        # The rate-limit counters live in the database cache table; `migrate` at deploy makes
        # it (and applies the statement-timeout role default), so there is no extra deploy step.
        post_migrate.connect(after_migrate, sender=self, dispatch_uid="config.after_migrate")
        if settings.DB_POOL.echo_sql:
            connection_created.connect(_echo_sql, dispatch_uid="config.echo_sql")
