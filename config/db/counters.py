"""Shared counters in PostgreSQL: the rate limits' store when there is no Redis.

One UNLOGGED table (``migrate`` creates it, as it creates the cache table): counting is one
statement in autocommit, an INSERT ... ON CONFLICT DO UPDATE ... RETURNING, so every worker on
every host counts against one number and a hit costs one round trip. (The database cache's
atomic ``incr`` needed a transaction of four: BEGIN, SELECT ... FOR UPDATE, UPDATE, COMMIT.)
Unlogged: the table skips the write-ahead log, so a crash of PostgreSQL empties it, which
restarts the current windows; counters are not worth WAL, and replicas never read them.
"""

from __future__ import annotations

import random
from contextlib import nullcontext
from datetime import datetime

from django.db import connections, transaction

from config.db.raw_select import statement_cursor

TABLE = "rate_limit_counters"
CREATE_SQL = f"""
CREATE UNLOGGED TABLE IF NOT EXISTS {TABLE} (
    key varchar(250) PRIMARY KEY,
    count bigint NOT NULL,
    expires timestamptz NOT NULL
)
"""
_INCREMENT_SQL = f"""
INSERT INTO {TABLE} AS c (key, count, expires) VALUES (%s, %s, %s)
ON CONFLICT (key) DO UPDATE SET count = c.count + EXCLUDED.count
RETURNING count
"""  # noqa: S608 (a constant table name; the key and expiry are parameters)
_SWEEP_SQL = f"DELETE FROM {TABLE} WHERE expires < now()"  # noqa: S608
# About one hit in this many also deletes finished windows: no cron, and no hit pays much.
SWEEP_ONE_IN = 2000


def increment(key: str, *, expires: datetime, amount: int = 1, using: str = "default") -> int:
    """Add ``amount`` to ``key`` (created at it, kept until ``expires``); return the new count.

    In autocommit (every request's throttle check) that is one statement; inside a transaction
    it runs in a savepoint, so a failure cannot abort the caller's work."""
    connection = connections[using]
    with (
        transaction.atomic(using=using) if connection.in_atomic_block else nullcontext(),
        statement_cursor(using) as cursor,
    ):
        cursor.execute(_INCREMENT_SQL, [key, amount, expires])
        row = cursor.fetchone()
        if random.randrange(SWEEP_ONE_IN) == 0:  # noqa: S311 (load spreading, not security)
            cursor.execute(_SWEEP_SQL)
    return int(row[0])


def create_table(using: str = "default") -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(CREATE_SQL)
