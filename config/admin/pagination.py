"""A paginator for admin lists of millions of rows: it never counts the whole table.

``COUNT(*)`` over a big table reads every row (PostgreSQL has no stored row count), so an
admin list that counts on every page load gets slower as the table grows. This paginator
counts exactly up to ``exact_limit`` rows (``SELECT count(*) FROM (... LIMIT n)``, which
stops early) and beyond that takes the planner's estimate (EXPLAIN, from the table's
statistics): the list says "about N". Page links past the real end show an empty page.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

EXACT_LIMIT = 10_000


class EstimatedCountPaginator(Paginator):
    exact_limit = EXACT_LIMIT

    def __init__(self, object_list: QuerySet, *args: Any, **kwargs: Any) -> None:
        super().__init__(object_list, *args, **kwargs)
        self.count_is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset: QuerySet[Any] = self.object_list  # type: ignore[assignment]  # admin lists are querysets
        count, self.count_is_estimate = estimated_count(queryset, self.exact_limit)
        return count


def estimated_count(queryset: QuerySet[Any], exact_limit: int = EXACT_LIMIT) -> tuple[int, bool]:
    """How many rows ``queryset`` holds: exact up to ``exact_limit`` (a count that stops there),
    else the planner's estimate; and whether it is the estimate. One or two statements, whatever
    the table's size."""
    bounded = queryset.order_by().values("pk")[: exact_limit + 1].count()
    if bounded <= exact_limit:
        return bounded, False
    return max(exact_limit + 1, _planner_estimate(queryset)), True


def _planner_estimate(queryset: QuerySet[Any]) -> int:
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
