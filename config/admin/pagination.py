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


class EstimatedCountPaginator(Paginator):
    exact_limit = 10_000

    def __init__(self, object_list: QuerySet, *args: Any, **kwargs: Any) -> None:
        super().__init__(object_list, *args, **kwargs)
        self.count_is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset: QuerySet[Any] = self.object_list  # type: ignore[assignment]  # admin lists are querysets
        bounded = queryset.order_by().values("pk")[: self.exact_limit + 1].count()
        if bounded <= self.exact_limit:
            return bounded
        self.count_is_estimate = True
        return max(self.exact_limit + 1, self._planner_estimate(queryset))

    @staticmethod
    def _planner_estimate(queryset: QuerySet) -> int:
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])
