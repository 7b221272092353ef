"""The session admin: sessions with their messages, read-only and paged; cancel.

A session's page shows its messages 50 at a time, read straight off the (session_id,
sequence) unique index by sequence range (sequences run 1..n without gaps), so page 200 of a
10,000-message session costs what page 1 does. Messages are never edited here; long contents
are cut in the table and shown whole on the message's own page.
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.db.models.functions import Left, Length
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.authentication import acting_user
from agent_sessions import services
from agent_sessions.activity import activity, live_sessions_by_status
from agent_sessions.models import Message, Session
from agent_sessions.queries import agent_ids
from audit.history import AuditHistoryMixin
from config.admin import dashboard
from config.admin.display import identifier, pretty_json, short_datetime
from config.admin.filters import DistinctValuesFilter, SoftDeleteFilter
from config.admin.pagination import EstimatedCountPaginator
from config.admin.services import ServiceModelAdmin, adopt, run_for_each
from config.db.daily import last_days

MESSAGES_PER_PAGE = 50
PREVIEW_CHARS = 2_000
MESSAGES_PAGE_PARAM = "messages_page"


class AgentFilter(DistinctValuesFilter):
    title = "agent"
    parameter_name = "agent_id"

    def values(self, limit: int) -> list[str]:
        return agent_ids(limit=limit)


@admin.register(Session)
class SessionAdmin(AuditHistoryMixin[Session], ServiceModelAdmin[Session]):
    audit_resource_type = services.RESOURCE
    list_display = (
        "title",
        "status",
        "agent_display",
        "owner",
        "messages_display",
        "tokens_display",
        "last_activity_display",
        "created_display",
    )
    list_filter = ("status", AgentFilter, ("last_activity_at", admin.DateFieldListFilter), SoftDeleteFilter)
    list_select_related = ("user",)
    search_fields = ("title", "agent_id", "user__email")
    search_help_text = "Title, agent id or owner email (contains)."
    ordering = ("-last_activity_at",)
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    actions = ("cancel_sessions",)
    fieldsets = [
        (None, {"fields": ["title", "owner", "agent_id", "status", "id", "external_id"]}),
        (
            "Activity",
            {"fields": ["total_messages", "total_tokens", "revision", "last_activity_at", "expires_at", "idle_expiry"]},
        ),
        ("Context and metadata", {"fields": ["context_display", "metadata_display"]}),
        ("History", {"fields": ["created_at", "updated_at", "deleted_at"]}),
    ]
    readonly = (
        "owner",
        "agent_id",
        "status",
        "id",
        "external_id",
        "total_messages",
        "total_tokens",
        "revision",
        "last_activity_at",
        "expires_at",
        "idle_expiry",
        "context_display",
        "metadata_display",
        "created_at",
        "updated_at",
        "deleted_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Session]:
        queryset = Session.all_objects.select_related("user")
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    # Agents create sessions through the API; Django's delete would skip the service.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Session | None = None) -> tuple[str, ...]:
        if obj is not None and obj.deleted_at is not None:
            return ("title", *self.readonly)
        return self.readonly

    def save_with_service(self, request: HttpRequest, obj: Session, form: ModelForm, change: bool) -> None:
        if "title" in form.changed_data:
            adopt(
                obj, services.session_update(actor=acting_user(request), session=obj, title=form.cleaned_data["title"])
            )

    # --- columns and read-only fields ---

    @admin.display(description="owner", ordering="user__email")
    def owner(self, obj: Session) -> SafeString:
        url = reverse("admin:accounts_user_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, identifier(obj.user.email))

    @admin.display(description="agent", ordering="agent_id")
    def agent_display(self, obj: Session) -> SafeString:
        return identifier(obj.agent_id)

    @admin.display(description="messages", ordering="total_messages")
    def messages_display(self, obj: Session) -> str:
        return f"{obj.total_messages:,}"

    @admin.display(description="tokens", ordering="total_tokens")
    def tokens_display(self, obj: Session) -> str:
        return f"{obj.total_tokens:,}"

    @admin.display(description="last activity", ordering="last_activity_at")
    def last_activity_display(self, obj: Session) -> SafeString | str:
        return short_datetime(obj.last_activity_at)

    @admin.display(description="created", ordering="created_at")
    def created_display(self, obj: Session) -> SafeString | str:
        return short_datetime(obj.created_at)

    @admin.display(description="context")
    def context_display(self, obj: Session) -> SafeString | str:
        return pretty_json(obj.context)

    @admin.display(description="metadata")
    def metadata_display(self, obj: Session) -> SafeString | str:
        return pretty_json(obj.metadata)

    # --- actions ---

    @admin.action(description="Cancel selected active sessions", permissions=["change"])
    def cancel_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        run_for_each(
            request,
            queryset,
            lambda session: services.session_cancel(
                actor=acting_user(request), session=session, reason="Cancelled by staff in the admin."
            ),
            done="Cancelled",
            noun=("session", "sessions"),
        )

    # --- messages on the session page ---

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Session | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context["messages_page"] = self.messages_page(request, obj)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def messages_page(self, request: HttpRequest, session: Session) -> dict[str, Any]:
        total = session.total_messages
        pages = max(1, math.ceil(total / MESSAGES_PER_PAGE))
        try:
            number = int(request.GET.get(MESSAGES_PAGE_PARAM, "1"))
        except ValueError:
            number = 1
        number = min(max(number, 1), pages)
        first = (number - 1) * MESSAGES_PER_PAGE + 1
        rows = list(
            Message.objects.filter(session_id=session.pk, sequence__gte=first, sequence__lt=first + MESSAGES_PER_PAGE)
            .order_by("sequence")
            .defer("content", "item")
            .annotate(
                preview=Left("content", PREVIEW_CHARS),
                length=Length("content"),
                has_item=ExpressionWrapper(Q(item__isnull=False), output_field=BooleanField()),
            )
        )
        # A paginator over a range only for its elided page links: nothing is counted.
        links = Paginator(range(total), MESSAGES_PER_PAGE).get_elided_page_range(number, on_each_side=2, on_ends=1)
        return {
            "rows": rows,
            "number": number,
            "pages": pages,
            "total": total,
            "first": first,
            "last": first + len(rows) - 1,
            "links": list(links) if total else [],
            "param": MESSAGES_PAGE_PARAM,
            "preview_chars": PREVIEW_CHARS,
        }

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/messages/<int:sequence>/",
                self.admin_site.admin_view(self.message_view),
                name="agent_sessions_session_message",
            ),
            path(
                "<path:object_id>/messages/<int:sequence>/item.json",
                self.admin_site.admin_view(self.message_item_view),
                name="agent_sessions_session_message_item",
            ),
            *super().get_urls(),
        ]

    def _message(self, request: HttpRequest, object_id: str, sequence: int) -> tuple[Session, Message]:
        session = self.get_object(request, unquote(object_id))
        if session is None:
            raise Http404("No such session.")
        if not self.has_view_permission(request, session):
            raise PermissionDenied
        message = Message.objects.filter(session_id=session.pk, sequence=sequence).first()
        if message is None:
            raise Http404("No such message.")
        return session, message

    def message_item_view(self, request: HttpRequest, object_id: str, sequence: int) -> HttpResponse:
        """The item's JSON text exactly as stored (key order, number spelling, escapes)."""
        _, message = self._message(request, object_id, sequence)
        if message.item is None:
            raise Http404("This message has no item.")
        return HttpResponse(message.item, content_type="application/json; charset=utf-8")

    def message_view(self, request: HttpRequest, object_id: str, sequence: int) -> HttpResponse:
        session, message = self._message(request, object_id, sequence)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Message #{message.sequence}",
            "subtitle": session.title,
            "opts": self.opts,
            "original": session,
            "message_obj": message,
            "tool_calls": pretty_json(message.tool_calls),
            "metadata": pretty_json(message.metadata),
            # Indented for reading, in the item's own key order (pretty_json sorts keys).
            "item": (
                format_html(
                    '<pre class="json-document">{}</pre>',
                    json.dumps(json.loads(message.item), indent=2, ensure_ascii=False),
                )
                if message.item is not None
                else "—"
            ),
            "original_anchor": f"?{MESSAGES_PAGE_PARAM}={math.ceil(message.sequence / MESSAGES_PER_PAGE)}#session-messages",
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/agent_sessions/session/message.html", context)


# --- the admin index's activity panel -----------------------------------------------------------

DASHBOARD_DAYS = 30


def day_label(day: datetime.date) -> str:
    return f"{day:%b} {day.day}"


@dashboard.register(order=20)
def sessions_panel(request: HttpRequest) -> dashboard.Panel | None:
    """Live sessions by status, today's messages and tokens, and 30 days of activity."""
    if not request.user.has_perm("agent_sessions.view_session"):
        return None
    days = last_days(DASHBOARD_DAYS)
    figures = activity(days)
    changelist = reverse("admin:agent_sessions_session_changelist")
    return dashboard.Panel(
        title="Sessions",
        figures=[
            *(
                dashboard.Figure(
                    f"{label.lower()} sessions", n, approximate, url=f"{changelist}?status__exact={status}"
                )
                for status, label, n, approximate in live_sessions_by_status()
            ),
            dashboard.Figure("messages today", figures.messages[days.today]),
            dashboard.Figure("tokens today", figures.tokens[days.today]),
        ],
        charts=[
            dashboard.Chart(
                "Sessions created per day",
                [(day_label(d), figures.sessions_created[d]) for d in days.days],
                unit="sessions",
            ),
            dashboard.Chart(
                "Messages appended per day", [(day_label(d), figures.messages[d]) for d in days.days], unit="messages"
            ),
            dashboard.Chart(
                f"Tokens per agent, last {DASHBOARD_DAYS} days",
                figures.tokens_by_agent,
                bars=True,
                unit="tokens",
                empty="No tokens used in these days.",
            ),
        ],
    )
