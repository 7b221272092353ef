"""List filters shared by the admin pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest


class SoftDeleteFilter(admin.SimpleListFilter):
    """Live rows by default (as ``Model.objects`` shows them); deleted ones, or all, on request.
    For a model whose admin queryset is a ``SoftDeleteQuerySet``."""

    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("no", "Live"), ("yes", "Deleted"), ("all", "All")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "yes":
            return queryset.dead()  # type: ignore[attr-defined]
        if value == "all":
            return queryset
        return queryset.alive()  # type: ignore[attr-defined]

    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        # No "All" entry meaning "no filter": without a value the list shows live rows.
        current = self.value() or "no"
        for lookup, title in self.lookup_choices:
            yield {
                "selected": current == lookup,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: lookup} if lookup != "no" else {}, [self.parameter_name]
                ),
                "display": title,
            }


class DistinctValuesFilter(admin.SimpleListFilter):
    """A filter over the values a column holds, offered as links.

    Subclasses set ``title`` and ``parameter_name`` (the model field) and implement ``values``
    with the app's query for them (a loose index scan in its ``queries.py``, never a
    ``SELECT DISTINCT`` over the table); ``limit`` caps how many are offered.
    """

    limit = 100

    def values(self, limit: int) -> list[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [(value, value) for value in self.values(self.limit)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset
