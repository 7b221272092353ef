"""Daily figures that stay cheap as tables grow: a rollup of closed days plus a live today.

A chart of the last 30 days over a table of millions of rows would read a month of rows on
every page load. Instead, each closed day is counted once into a small rollup table (a row per
day and key, plus one row per day whose key is NULL: the day's total, which also marks the
day as done), and only the days not yet settled are read live, by an index range that holds
one day of rows. A day is settled ``SETTLE`` after it ends, so that a row stamped just before
midnight by a transaction that commits just after it is still counted. Rollup rows are never
updated: a settled day's rows do not change (the tables counted are append-only, or counted by
creation time), so two processes filling the same day insert the same rows and the second's
are ignored.

The live part is kept ``LIVE_SECONDS`` in the shared cache (``live``): however many staff
have the page open, the unsettled days are read at most once per interval, and the figures for
today lag by at most that much.

An app owns its rollup model and its counting query; ``fill_missing_days`` is the driver.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.cache import cache
from django.db.models import Model, QuerySet
from django.utils import timezone

R = TypeVar("R", bound=Model)
T = TypeVar("T")

logger = logging.getLogger(__name__)

# How long a live read of the unsettled days is reused (see the module docstring).
LIVE_SECONDS = 30

# How long after a day ends before its rollup is written (see the module docstring).
SETTLE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Days:
    """The last ``len(days)`` local days, oldest first, ending today; and which are settled."""

    days: tuple[datetime.date, ...]
    settled: tuple[datetime.date, ...]  # a prefix of days: those the rollup answers for

    @property
    def first(self) -> datetime.date:
        return self.days[0]

    @property
    def today(self) -> datetime.date:
        return self.days[-1]

    @property
    def live(self) -> tuple[datetime.date, ...]:
        """The days read from the source table (today, and yesterday just after midnight)."""
        return self.days[len(self.settled) :]

    @property
    def live_since(self) -> datetime.datetime:
        return start_of(self.live[0])


def start_of(day: datetime.date) -> datetime.datetime:
    """Midnight starting ``day`` in the current time zone (TIME_ZONE)."""
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=timezone.get_current_timezone())


def last_days(count: int, *, now: datetime.datetime | None = None) -> Days:
    now = now or timezone.now()
    today = timezone.localdate(now)
    days = tuple(today - datetime.timedelta(days=n) for n in range(count - 1, -1, -1))
    settled = tuple(day for day in days if start_of(day + datetime.timedelta(days=1)) + SETTLE <= now)
    return Days(days=days, settled=settled)


def live(key: str, days: Days, compute: Callable[[], T]) -> T:
    """``compute()``, reused from the shared cache for ``LIVE_SECONDS`` under ``key`` and the
    unsettled days (a new day is a new entry). A cache that is down means computing each time."""
    full_key = f"daily-live:{key}:{days.live_since.isoformat()}"
    try:
        found = cache.get(full_key)
    except Exception:  # the cache is down: the page still works, at the uncached cost
        logger.warning("dashboard cache unavailable", exc_info=True)
        return compute()
    if found is not None:
        return found  # what compute() returned last time
    value = compute()
    try:
        cache.set(full_key, value, LIVE_SECONDS)
    except Exception:
        logger.warning("dashboard cache unavailable", exc_info=True)
    return value


def _runs(days: Iterable[datetime.date]) -> Iterator[tuple[datetime.date, datetime.date]]:
    """Consecutive days as (first, last) pairs."""
    run: list[datetime.date] = []
    for day in sorted(days):
        if run and day != run[-1] + datetime.timedelta(days=1):
            yield run[0], run[-1]
            run = []
        run.append(day)
    if run:
        yield run[0], run[-1]


def fill_missing_days(
    totals: QuerySet[Any],
    days: Iterable[datetime.date],
    count: Callable[[datetime.datetime, datetime.datetime], list[R]],
) -> int:
    """Write the rollup rows of those settled ``days`` that ``totals`` (the rollup's per-day
    total rows, with a ``day`` field) does not hold yet; return how many days were counted.

    ``count(start, end)`` counts the source rows stamped in ``[start, end)`` (whole local days)
    and returns unsaved rollup rows: every key's row per day, and each day's total row, zero
    counts included. Consecutive missing days are counted by one call.
    """
    wanted = set(days)
    if not wanted:
        return 0
    have = set(totals.filter(day__in=wanted).values_list("day", flat=True))
    missing = wanted - have
    for first, last in _runs(missing):
        rows = count(start_of(first), start_of(last + datetime.timedelta(days=1)))
        if rows:
            # Another process may be filling the same days: their rows are the same, keep one.
            type(rows[0])._default_manager.bulk_create(rows, ignore_conflicts=True)
    return len(missing)
