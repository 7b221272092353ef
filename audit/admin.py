"""The audit trail in the admin: read-only for everyone, and fast at millions of rows.

Nobody adds, changes or deletes rows here, superusers included (the table itself refuses
UPDATE and DELETE). What keeps the list fast on a big table:

* no full COUNT: the paginator counts up to 10,000 matching rows and estimates beyond
  (config.admin.pagination), and ``show_full_result_count`` is off;
* newest first by ``timestamp`` (indexed), filters on indexed columns only (action,
  resource type, timestamp ranges); the resource type choices come from a loose index scan;
* search is exact on resource id, user id and request id, each answered by an index;
* the date hierarchy asks, per candidate year/month/day, for the first row in it (one
  statement of index probes) instead of Django's ``SELECT DISTINCT date_trunc(...)`` over
  every row;
* facets are off.
"""

from __future__ import annotations

import calendar
import datetime
import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db.models import Max, Min, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst

from audit.activity import per_day
from audit.history import actor as describe_actor
from audit.history import emails_for, is_uuid, resource_url, short
from audit.models import AuditLog
from audit.queries import periods_with_rows, resource_types
from config.admin import dashboard
from config.admin.display import identifier, pretty_json, short_datetime
from config.admin.filters import DistinctValuesFilter
from config.admin.pagination import EstimatedCountPaginator
from config.admin.replicas import ReplicaChangeListMixin
from config.db.daily import last_days


class ResourceTypeFilter(DistinctValuesFilter):
    title = "resource type"
    parameter_name = "resource_type"

    def values(self, limit: int) -> list[str]:
        return resource_types(limit=limit)


class AuditChangeList(ChangeList):
    """Django's change list with a date hierarchy that probes for rows instead of scanning,
    and the emails of the users a page names, fetched in one query for the whole page."""

    def get_filters(self, request: HttpRequest) -> Any:
        try:
            return super().get_filters(request)
        except (ValueError, OverflowError) as exc:  # ?timestamp__year=9999 has no next year
            raise IncorrectLookupParameters(exc) from exc

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        ids: set[object] = {row.user_id for row in rows if row.user_id}
        ids |= {row.resource_id for row in rows if row.resource_type == "user"}
        emails = emails_for(ids)
        for row in rows:
            row.user_emails = emails
        self.result_list = rows

    @cached_property
    def fast_date_hierarchy(self) -> dict[str, Any]:
        field = self.date_hierarchy
        year_field, month_field, day_field = f"{field}__year", f"{field}__month", f"{field}__day"
        year = self.params.get(year_field)
        month = self.params.get(month_field)
        day = self.params.get(day_field)
        year, month, day = (int(v[-1] if isinstance(v, list) else v) if v else None for v in (year, month, day))

        def link(filters: dict[str, Any]) -> str:
            return self.get_query_string(filters, [f"{field}__"])

        if not (year or month or day):
            # Min and max come off the timestamp index; pick the level to start at like Django.
            bounds = self.queryset.aggregate(first=Min(field), last=Max(field))
            if bounds["first"] is None:
                return {"show": False}
            first, last = timezone.localtime(bounds["first"]), timezone.localtime(bounds["last"])
            if first.year == last.year:
                year = first.year
                if first.month == last.month:
                    month = first.month
            else:
                years = periods_with_rows(
                    self.queryset,
                    self.date_hierarchy,
                    [(y, 1, 1, y + 1, 1, 1) for y in range(first.year, last.year + 1)],
                )
                return {
                    "show": True,
                    "back": None,
                    "choices": [{"link": link({year_field: str(y[0])}), "title": str(y[0])} for y in years],
                }
        if year and month and day:
            date = datetime.date(year, month, day)
            return {
                "show": True,
                "back": {
                    "link": link({year_field: year, month_field: month}),
                    "title": capfirst(formats.date_format(date, "YEAR_MONTH_FORMAT")),
                },
                "choices": [{"title": capfirst(formats.date_format(date, "MONTH_DAY_FORMAT"))}],
            }
        if year and month:
            days_in_month = calendar.monthrange(year, month)[1]
            candidates = []
            for d in range(1, days_in_month + 1):
                end = datetime.date(year, month, d) + datetime.timedelta(days=1)
                candidates.append((year, month, d, end.year, end.month, end.day))
            days = periods_with_rows(self.queryset, self.date_hierarchy, candidates)
            return {
                "show": True,
                "back": {"link": link({year_field: year}), "title": str(year)},
                "choices": [
                    {
                        "link": link({year_field: year, month_field: month, day_field: c[2]}),
                        "title": capfirst(formats.date_format(datetime.date(*c[:3]), "MONTH_DAY_FORMAT")),
                    }
                    for c in days
                ],
            }
        if year is None:  # a month or day asked for without its year: no hierarchy to offer
            return {"show": False}
        candidates = [(year, m, 1, year + (m == 12), m % 12 + 1, 1) for m in range(1, 13)]
        months = periods_with_rows(self.queryset, self.date_hierarchy, candidates)
        return {
            "show": True,
            "back": {"link": link({}), "title": "All dates"},
            "choices": [
                {
                    "link": link({year_field: year, month_field: c[1]}),
                    "title": capfirst(formats.date_format(datetime.date(*c[:3]), "YEAR_MONTH_FORMAT")),
                }
                for c in months
            ],
        }


@admin.register(AuditLog)
class AuditLogAdmin(ReplicaChangeListMixin[AuditLog]):
    list_display = (
        "time_display",
        "action",
        "resource_type",
        "resource",
        "actor",
        "ip_display",
        "request_line",
        "status_display",
    )
    list_filter = ("action", ResourceTypeFilter, ("timestamp", admin.DateFieldListFilter))
    date_hierarchy = "timestamp"
    ordering = ("-timestamp",)
    search_fields = ("resource_id", "user_id", "request_id")
    search_help_text = "Exact resource id, user id or request id."
    list_per_page = 100
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    actions = None
    fieldsets = [
        (None, {"fields": ["timestamp", "action", "resource_type", "resource", "actor"]}),
        (
            "Request",
            {"fields": ["ip_address", "user_agent", "request_method", "request_path", "response_status", "request"]},
        ),
        ("What changed", {"fields": ["changes_display", "metadata_display"]}),
        (None, {"fields": ["id"]}),
    ]

    # --- read-only for everyone ---

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # An audit row never changes: it is its own history (Django's would read LogEntry).
        return HttpResponseRedirect(reverse("admin:audit_auditlog_change", args=[object_id]))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(name) for _, options in self.fieldsets for name in options["fields"]]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AuditChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # resource_id is indexed second, after resource_type: naming every type lets
        # PostgreSQL use (resource_type, resource_id) with one probe per type.
        types = resource_types()
        try:
            as_uuid = uuid.UUID(term)
        except ValueError:
            return queryset.filter(resource_type__in=types, resource_id=term), False
        condition = (
            Q(resource_type__in=types, resource_id__in={term, str(as_uuid)})
            | Q(user_id=as_uuid)
            | Q(request_id=as_uuid)
        )
        return queryset.filter(condition), False

    # --- columns ---

    def _emails(self, obj: AuditLog) -> dict[str, str]:
        emails = getattr(obj, "user_emails", None)
        if emails is None:  # the entry's own page: one row, one lookup
            emails = emails_for([obj.user_id, obj.resource_id if obj.resource_type == "user" else None])
        return emails

    @admin.display(description="resource")
    def resource(self, obj: AuditLog) -> SafeString | str:
        if not obj.resource_id:
            return "—"
        label: SafeString | str = short(obj.resource_id)
        if obj.resource_type == "user" and is_uuid(obj.resource_id):
            email = self._emails(obj).get(obj.resource_id)
            label = identifier(email) if email else label
        url = resource_url(obj.resource_type, obj.resource_id)
        if url is None:
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="actor")
    def actor(self, obj: AuditLog) -> SafeString:
        return describe_actor(obj, self._emails(obj))

    @admin.display(description="time", ordering="timestamp")
    def time_display(self, obj: AuditLog) -> SafeString | str:
        return short_datetime(obj.timestamp)

    @admin.display(description="IP")
    def ip_display(self, obj: AuditLog) -> SafeString | str:
        if not obj.ip_address:
            return "—"
        # An IPv4 address stays on one line; a long IPv6 one may break.
        return identifier(obj.ip_address) if ":" in obj.ip_address else obj.ip_address

    @admin.display(description="status")
    def status_display(self, obj: AuditLog) -> int | str:
        return obj.response_status if obj.response_status is not None else "—"

    @admin.display(description="request")
    def request_line(self, obj: AuditLog) -> SafeString | str:
        if not obj.request_method:
            return "—"
        return identifier(f"{obj.request_method} {obj.request_path or ''}".strip())

    @admin.display(description="all rows of this request")
    def request(self, obj: AuditLog) -> SafeString | str:
        if obj.request_id is None:
            return "—"
        url = reverse("admin:audit_auditlog_changelist") + f"?q={obj.request_id}"
        return format_html('<a href="{}">{}</a>', url, obj.request_id)

    @admin.display(description="changes")
    def changes_display(self, obj: AuditLog) -> SafeString | str:
        return pretty_json(obj.changes)

    @admin.display(description="metadata")
    def metadata_display(self, obj: AuditLog) -> SafeString | str:
        return pretty_json(obj.metadata)


# --- the admin index's activity panel -----------------------------------------------------------

DASHBOARD_DAYS = 30


@dashboard.register(order=40)
def failed_authentications_panel(request: HttpRequest) -> dashboard.Panel | None:
    """Failed authentications (API keys and admin logins) per day, for 30 days."""
    if not request.user.has_perm("audit.view_auditlog"):
        return None
    days = last_days(DASHBOARD_DAYS)
    counts = per_day(days, AuditLog.Action.FAILED_AUTH)
    url = reverse("admin:audit_auditlog_changelist") + f"?action__exact={AuditLog.Action.FAILED_AUTH}"
    return dashboard.Panel(
        title="Authentication",
        figures=[dashboard.Figure("failed authentications today", counts[days.today], url=url)],
        charts=[
            dashboard.Chart(
                "Failed authentications per day",
                [(f"{day:%b} {day.day}", counts[day]) for day in days.days],
                unit="failed",
            )
        ],
    )
