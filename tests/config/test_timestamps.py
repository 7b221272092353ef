"""timestamptz values parsed in C (config.db.backend.timestamps) come out exactly as Django's
own loader makes them: the same instant, the same time zone, the same errors, for the text
PostgreSQL itself writes."""

from __future__ import annotations

import datetime

import psycopg
import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import get_adapters_template
from psycopg.pq import Format

from agent_sessions.models import Session
from config.db.backend.timestamps import TIMESTAMPTZ_OID, TimestamptzLoader, with_fast_timestamps
from tests.conftest import database_url

# Literals PostgreSQL accepts, written back in each session time zone below: fractions of every
# length, offsets with minutes and seconds (local mean time before 1900), the first and last
# years, BC, infinity, and the last instant, which a negative offset pushes past year 9999.
LITERALS = [
    "2026-12-02 14:48:01.236123+00",
    "2026-12-02 14:48:01+00",
    "2026-12-02 14:48:01.5+00",
    "2026-12-02 14:48:01.000001+00",
    "2026-07-01 00:00:00+00",
    "1850-06-01 12:00:00+00",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "9999-12-31 20:00:00+00",
    "0044-03-15 12:00:00+00 BC",
    "10000-01-01 00:00:00+00",
    "infinity",
    "-infinity",
]
ZONES = ["UTC", "Asia/Kolkata", "America/St_Johns", "Europe/Amsterdam", "Pacific/Chatham", "America/Caracas"]


def _load(loader: psycopg.adapt.Loader, data: bytes) -> tuple[str, object]:
    try:
        value = loader.load(data)
    except Exception as exc:  # the error is part of what must match
        return ("error", (type(exc), str(exc)))
    return ("value", (value, value.tzinfo, value.isoformat()))


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ZONES)
def test_every_value_postgresql_writes_loads_as_djangos_loader_loads_it(zone):
    template = get_adapters_template(True, datetime.UTC)
    slow_class = template.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    fast_class = with_fast_timestamps(template).get_loader(TIMESTAMPTZ_OID, Format.TEXT)
    assert issubclass(fast_class, TimestamptzLoader) and fast_class.timezone is slow_class.timezone
    with psycopg.connect(database_url(connection.settings_dict["NAME"]), autocommit=True) as raw:
        raw.execute("SELECT set_config('TimeZone', %s, false)", [zone])
        texts = [raw.execute("SELECT %s::timestamptz::text", [literal]).fetchone()[0] for literal in LITERALS]
        slow, fast = slow_class(TIMESTAMPTZ_OID, raw), fast_class(TIMESTAMPTZ_OID, raw)
        compared = [(text, _load(fast, text.encode()), _load(slow, text.encode())) for text in texts]
        compared += [(t, _load(fast, memoryview(t.encode())), _load(slow, memoryview(t.encode()))) for t in texts[:2]]
    for text, got, expected in compared:
        assert got == expected, text
    outcomes = {got[0] for _, got, _ in compared}
    assert outcomes == {"value", "error"}, "both the fast path and the fallbacks were exercised"


@pytest.mark.django_db
def test_djangos_connections_read_timestamps_through_it_and_the_values_are_utc(alice):
    session = Session.objects.create(user=alice.user, agent_id="a", title="t")
    with connection.cursor() as cursor:
        loader = cursor.cursor.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        assert issubclass(loader, TimestamptzLoader), loader  # Django kept it: same zone
        cursor.execute("SELECT created_at FROM sessions WHERE id = %s", [session.pk])
        (created,) = cursor.fetchone()
    assert created.tzinfo is datetime.UTC
    assert created == Session.objects.get(pk=session.pk).created_at == session.created_at
