"""What ``manage.py migrate`` sets up besides the migrations (a post_migrate hook)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connections

from config.db.counters import create_table as create_counter_table

logger = logging.getLogger(__name__)


def after_migrate(using: str = "default", verbosity: int = 1, **kwargs: Any) -> None:
    """post_migrate hook: what `manage.py migrate` sets up besides the migrations.

    * the database cache table, and the rate limits' counter table (config.db.counters), both
      used when no REDIS_URL is set;
    * DB_STATEMENT_TIMEOUT as the role's default in this database, so connections that cannot
      pass it at connect time (PgBouncer in transaction mode drops startup options) still get it.
    """
    call_command("createcachetable", database=using, verbosity=0)
    create_counter_table(using)
    timeout_ms = settings.DB_POOL.statement_timeout_ms
    connection = connections[using]
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_database(), (SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d "
                "ON d.oid = s.setdatabase JOIN pg_roles r ON r.oid = s.setrole "
                "WHERE d.datname = current_database() AND r.rolname = current_user)"
            )
            dbname, previous = cursor.fetchone()
            cursor.execute(
                f"ALTER ROLE CURRENT_USER IN DATABASE {connection.ops.quote_name(dbname)} "
                f"SET statement_timeout = {int(timeout_ms)}"
            )
    except DatabaseError as exc:  # a role without the right to alter itself: say so, go on
        logger.warning("could not set the role's statement_timeout default: %s", exc)
        return
    if settings.DB_POOL.mode == "pgbouncer" and f"statement_timeout={int(timeout_ms)}" not in (previous or []):
        # A role default applies to connections opened after it; PgBouncer's open server
        # connections keep the old value until they are recycled.
        logger.warning(
            "statement_timeout for this role is now %sms; run RECONNECT on the PgBouncer admin console "
            "(or wait for its server_lifetime) so that open server connections pick it up",
            int(timeout_ms),
        )
