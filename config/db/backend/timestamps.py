"""``timestamptz`` values read by the C parser instead of a regular expression.

psycopg's own loaders are C (psycopg_binary) except where an application registers a Python
subclass, and Django does for ``timestamptz``: its ``BaseTzLoader`` (relabelling each value with
the connection's Django time zone) extends psycopg's pure-Python ``TimestamptzLoader``, which
matches every value against a regular expression and builds the datetime in Python: 1.9 us a
value against 0.1 us for ``datetime.fromisoformat``, a twentieth of a page of 50 messages
(bench/README.md).

``TimestamptzLoader`` here is Django's loader with that parse done by ``fromisoformat`` for the
text PostgreSQL writes under ``DateStyle=ISO`` (``2026-12-02 14:48:01.236123+00``, offsets to the
second); anything ``fromisoformat`` refuses or cannot shift (BC dates, years past 9999,
``infinity``, a shift past the last representable instant, another DateStyle) goes through
Django's and psycopg's path unchanged, so the value, its time zone and every error are what they
were. tests/config/test_timestamps.py holds the two to each other over PostgreSQL's own output.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from django.db.backends.postgresql.psycopg_any import BaseTzLoader  # type: ignore[import-untyped]
from psycopg import adapt
from psycopg.postgres import types
from psycopg.pq import Format
from psycopg.types.datetime import TimestamptzLoader as PythonTimestamptzLoader

TIMESTAMPTZ_OID = types["timestamptz"].oid


class TimestamptzLoader(BaseTzLoader):
    def load(self, data: Any) -> datetime:
        if self._load_method is PythonTimestamptzLoader._load_iso:  # DateStyle ISO
            try:
                text = data.decode() if isinstance(data, bytes) else bytes(data).decode()
                # The instant PostgreSQL wrote, in the connection's zone (what psycopg returns),
                # then relabelled with Django's zone (what Django's loader does).
                parsed = datetime.fromisoformat(text)
                value = parsed.astimezone(self._timezone) if parsed.tzinfo is not None else None
            except (ValueError, OverflowError):
                value = None
            if value is not None:
                zone = self.timezone
                return value if value.tzinfo is zone else value.replace(tzinfo=zone)
        return super().load(data)


@functools.cache
def with_fast_timestamps(template: adapt.AdaptersMap) -> adapt.AdaptersMap:
    """Django's adapters map for its connections (``get_adapters_template``), with its
    ``timestamptz`` loader replaced by one for the same zone that parses in C. Django compares
    the loader's ``timezone`` with its own before each cursor and registers its loader on the
    cursor when they differ: the same attribute, so it keeps doing so."""
    django_loader = template.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    if django_loader is None or not issubclass(django_loader, BaseTzLoader):
        return template  # not the map Django builds: leave it alone
    zone = getattr(django_loader, "timezone", None)
    loader = type("TimestamptzLoader", (TimestamptzLoader,), {"timezone": zone})
    adapters = adapt.AdaptersMap(template)
    adapters.register_loader("timestamptz", loader)
    return adapters
