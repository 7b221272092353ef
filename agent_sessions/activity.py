"""What the admin's dashboard shows about sessions and messages, at a cost that does not grow
with the tables.

* Per day (sessions created, messages appended, tokens, per agent): settled days come from
  ``ActivityDay`` (a rollup written once per day, ``config.db.daily``), the unsettled ones
  (today, and yesterday just after midnight) are counted live by an index range holding only
  those days: messages by ``ix_messages_created_brin``, sessions by
  ``ix_sessions_last_activity_at`` (a session created since T has been active since T), and
  that read is reused for 30 seconds (``config.db.daily.live``).
* Live sessions by status: a count per status that stops at 10,000 rows, then the planner's
  estimate (``config.admin.pagination.estimated_count``).

Measured with 1,000,000 messages over 60 days (bench/run.py, "admin index"): a month of
messages read live cost about 300 ms a page; from the rollup plus today, a few milliseconds.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from agent_sessions.models import ActivityDay, Message, Session
from config.admin.pagination import estimated_count
from config.db.daily import Days, fill_missing_days, live

# A session's last_activity_at starts as its creation time (set a moment before created_at):
# sessions created since T are among those active since T minus this margin.
CREATED_MARGIN = datetime.timedelta(hours=1)
TOP_AGENTS = 10


@dataclass(frozen=True)
class Activity:
    days: tuple[datetime.date, ...]
    sessions_created: dict[datetime.date, int]
    messages: dict[datetime.date, int]
    tokens: dict[datetime.date, int]
    tokens_by_agent: list[tuple[str, int]]  # the top agents over the days, most tokens first


def _local_day(field: str) -> TruncDate:
    return TruncDate(field, tzinfo=timezone.get_current_timezone())


def count_days(start: datetime.datetime, end: datetime.datetime) -> list[ActivityDay]:
    """Rollup rows for the whole local days in ``[start, end)``: per agent with activity, and
    each day's total (zeros included, which marks the day as counted)."""
    rows: dict[tuple[datetime.date, str | None], ActivityDay] = {}

    def row(day: datetime.date, agent: str | None) -> ActivityDay:
        return rows.setdefault((day, agent), ActivityDay(day=day, agent_id=agent))

    sessions = (
        Session.all_objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=_local_day("created_at"))
        .values_list("day", "agent_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for day, agent, n in sessions:
        row(day, agent).sessions_created += n
        row(day, None).sessions_created += n
    messages = (
        Message.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=_local_day("created_at"))
        .values_list("day", "session__agent_id")
        .annotate(n=Count("pk"), tokens=Sum("token_count"))
        .order_by()
    )
    for day, agent, n, tokens in messages:
        for key in (agent, None):
            row(day, key).messages += n
            row(day, key).tokens += tokens or 0
    day, last = timezone.localdate(start), timezone.localdate(end - datetime.timedelta(microseconds=1))
    while day <= last:
        row(day, None)
        day += datetime.timedelta(days=1)
    return list(rows.values())


def _live(since: datetime.datetime) -> list[ActivityDay]:
    """``count_days`` for the unsettled days, read through indexes that hold only them."""
    rows: dict[tuple[datetime.date, str | None], ActivityDay] = {}
    sessions = (
        Session.all_objects.filter(last_activity_at__gte=since - CREATED_MARGIN, created_at__gte=since)
        .annotate(day=_local_day("created_at"))
        .values_list("day", "agent_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for day, agent, n in sessions:
        rows.setdefault((day, agent), ActivityDay(day=day, agent_id=agent)).sessions_created += n
    # Per session first, then the sessions' agents by primary key: joining the day's messages to
    # sessions would hash the whole sessions table on every page load.
    messages = list(
        Message.objects.filter(created_at__gte=since)
        .annotate(day=_local_day("created_at"))
        .values_list("day", "session_id")
        .annotate(n=Count("pk"), tokens=Sum("token_count"))
        .order_by()
    )
    agents = dict(
        Session.all_objects.filter(pk__in={session for _, session, _, _ in messages}).values_list("pk", "agent_id")
    )
    for day, session, n, tokens in messages:
        agent = agents.get(session, "")
        entry = rows.setdefault((day, agent), ActivityDay(day=day, agent_id=agent))
        entry.messages += n
        entry.tokens += tokens or 0
    return list(rows.values())


def activity(days: Days) -> Activity:
    """Sessions, messages and tokens per day over ``days``, and the agents that used the most
    tokens: the rollup (filled first with any settled day it lacks) plus a live read of the rest."""
    fill_missing_days(ActivityDay.objects.filter(agent_id__isnull=True), days.settled, count_days)
    rolled = list(ActivityDay.objects.filter(day__gte=days.first, day__lte=days.settled[-1])) if days.settled else []
    rows = rolled + live("agent_sessions.activity", days, lambda: _live(days.live_since))
    sessions: dict[datetime.date, int] = defaultdict(int)
    messages: dict[datetime.date, int] = defaultdict(int)
    tokens: dict[datetime.date, int] = defaultdict(int)
    by_agent: dict[str, int] = defaultdict(int)
    for entry in rows:
        if entry.agent_id is None:
            if entry.day in days.live:
                continue  # live rows are per agent only; totals are summed from them below
            sessions[entry.day] += entry.sessions_created
            messages[entry.day] += entry.messages
            tokens[entry.day] += entry.tokens
            continue
        by_agent[entry.agent_id] += entry.tokens
        if entry.day in days.live:
            sessions[entry.day] += entry.sessions_created
            messages[entry.day] += entry.messages
            tokens[entry.day] += entry.tokens
    top = sorted(((agent, n) for agent, n in by_agent.items() if n), key=lambda item: (-item[1], item[0]))
    return Activity(
        days=days.days,
        sessions_created={day: sessions[day] for day in days.days},
        messages={day: messages[day] for day in days.days},
        tokens={day: tokens[day] for day in days.days},
        tokens_by_agent=top[:TOP_AGENTS],
    )


def live_sessions_by_status() -> list[tuple[str, str, int, bool]]:
    """(status, label, count, is_estimate) for each status, over live sessions."""
    return [
        (status, label, *estimated_count(Session.objects.filter(status=status)))
        for status, label in Session.Status.choices
    ]
