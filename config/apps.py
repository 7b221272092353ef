"""The project's two app configs: the project itself, and the admin pointed at our site."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


def _echo_sql(sender: Any, connection: Any, **kwargs: Any) -> None:
    # Django only logs SQL with DEBUG on; DB_ECHO_SQL=true asks for it in any mode.
    connection.force_debug_cursor = True


class ProjectConfig(AppConfig):
    """The project: the commands that sequence several apps (seed_demo, verify_database,
    purge_soft_deleted), shared admin templates, and the migrate hook. It has no tables."""

    name = "config"
    label = "config"
    verbose_name = "Project"

    def ready(self) -> None:
        from django.apps import apps
        from django.conf import settings
        from django.core import checks

        from config.checks import check_static_manifest
        from config.db.migrate import after_migrate
        from config.db.storage import use_thread_local_connections
        from config.handlers import drop_idle_request_receivers
        from config.observability import tracing

        # The rate-limit counters live in the database cache table; `migrate` at deploy makes
        # it (and applies the statement-timeout role default), so there is no extra deploy step.
        # post_migrate is sent once per app that has models, and this one has none: listen for
        # the last such app, so the hook runs once, after every app is migrated.
        last = [config for config in apps.get_app_configs() if config.models_module is not None][-1]
        post_migrate.connect(after_migrate, sender=last, dispatch_uid="config.after_migrate")
        # A deploy check only: migrate and collectstatic itself must still run without a manifest.
        checks.register(check_static_manifest, checks.Tags.staticfiles, deploy=True)
        if settings.DB_POOL.echo_sql:
            connection_created.connect(_echo_sql, dispatch_uid="config.echo_sql")
        # OpenTelemetry when OTEL_EXPORTER_OTLP_ENDPOINT asks (imports nothing otherwise); here,
        # before any WSGI handler loads the middleware the instrumentation adds.
        tracing.configure()
        drop_idle_request_receivers()
        # Each thread's connections in a plain thread-local, as asgiref keeps them in a sync
        # thread, without its per-access event-loop probe (config.db.storage).
        use_thread_local_connections()


class PlatformAdminConfig(AdminConfig):
    """``django.contrib.admin`` with our site: a login that is throttled and audited. Named by a
    string so this module imports nothing that needs the app registry."""

    default_site = "accounts.admin_site.PlatformAdminSite"
