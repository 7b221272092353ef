"""The audit trail where staff look for it: each admin object's History page, and the admin
index's recent actions.

Django's History page and the index's "Recent actions" read ``LogEntry``, which only records
edits made through the admin's own forms. Our record is ``audit_logs``: every change, from the
admin, the API and the commands, written by the service that made it. ``AuditHistoryMixin``
(for the ModelAdmins of the other apps) replaces the History page with that object's audit
rows, newest first, in keyset pages of ``HISTORY_PAGE_SIZE`` read off
``ix_audit_logs_resource_ts``: the first page and the thousandth of an object with 100,000 rows
cost what a page of an object with 3 rows does (no OFFSET, no COUNT). ``recent_actions`` is the
signed-in staff member's own latest rows (``ix_audit_logs_user_ts``). Nothing writes LogEntry
rows any more: they would be a second, partial record.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import BadRequest, PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst

from audit.models import AuditLog
from config.admin.display import identifier

M = TypeVar("M", bound=models.Model)

HISTORY_PAGE_SIZE = 50
RECENT_ACTIONS = 10
BEFORE, AFTER = "before", "after"
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

# resource_type -> (app label, model name) of the model it names, whose admin page shows it.
# By name: the apps import audit, never the other way round.
RESOURCE_MODELS = {
    "user": ("accounts", "user"),
    "api_key": ("apikeys", "apikey"),
    "session": ("agent_sessions", "session"),
}


def resource_url(resource_type: str, resource_id: str | None) -> str | None:
    model = RESOURCE_MODELS.get(resource_type)
    if model is None or not resource_id:
        return None
    try:
        return reverse(f"admin:{model[0]}_{model[1]}_change", args=[resource_id])
    except NoReverseMatch:
        return None


def resource_labels(rows: Iterable[AuditLog]) -> dict[tuple[str, str], str]:
    """What each (resource type, id) the rows name is called now (``str()`` of the object, soft
    deleted ones too): one query per resource type present."""
    wanted: dict[str, set[str]] = {}
    for row in rows:
        if row.resource_type in RESOURCE_MODELS and row.resource_id and is_uuid(row.resource_id):
            wanted.setdefault(row.resource_type, set()).add(row.resource_id)
    labels: dict[tuple[str, str], str] = {}
    for resource_type, ids in wanted.items():
        model = apps.get_model(*RESOURCE_MODELS[resource_type])
        for obj in model._base_manager.filter(pk__in=ids):
            labels[(resource_type, str(obj.pk))] = str(obj)
    return labels


def users() -> QuerySet[Any]:
    """Every user, soft-deleted ones too (the trail outlives them): the user model's base
    manager, which filters nothing."""
    return get_user_model()._base_manager.all()


def is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def emails_for(ids: Iterable[object]) -> dict[str, str]:
    """The emails of the users ``ids`` name (UUIDs or their text), in one query."""
    wanted = {str(i) for i in ids if i and is_uuid(i)}
    if not wanted:
        return {}
    return {str(pk): email for pk, email in users().filter(pk__in=wanted).values_list("pk", "email")}


def short(value: object) -> SafeString:
    """A long id in a narrow column: the first 8 characters, the whole id on hover."""
    text = str(value)
    if len(text) <= 12:
        return format_html("{}", text)
    return format_html('<span title="{}">{}…</span>', text, text[:8])


def actor(row: AuditLog, emails: Mapping[str, str]) -> SafeString:
    """Who acted: the user (linked), with the API key they used (its hint, linked); or the
    system command (``system:<command>``); or "anonymous"."""
    metadata = row.metadata if isinstance(row.metadata, dict) else {}
    key_hint, key_id = metadata.get("api_key_hint"), metadata.get("api_key_id")
    via: SafeString = mark_safe("")
    if key_hint:
        key_url = resource_url("api_key", key_id)
        via = (
            format_html(' <span class="via">via <a href="{}">{}</a></span>', key_url, identifier(key_hint))
            if key_url
            else format_html(' <span class="via">via {}</span>', identifier(key_hint))
        )
    if row.user_id is not None:
        label = emails.get(str(row.user_id))
        url = reverse("admin:accounts_user_change", args=[row.user_id])
        return format_html('<a href="{}">{}</a>{}', url, identifier(label) if label else short(row.user_id), via)
    system = metadata.get("actor")
    if system:
        return format_html('<span class="system-actor">{}</span>{}', system, via)
    return format_html('<span class="quiet">anonymous</span>{}', via)


# --- changes, old -> new ----------------------------------------------------------------------


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False, sort_keys=True, cls=DjangoJSONEncoder)


@dataclass(frozen=True)
class Change:
    field: str
    old: str | None  # None: the field had no value before (a creation)
    new: str | None  # None: not given (a change recorded without its new value)


def changes(row: AuditLog) -> list[Change]:
    """The row's ``changes`` as one line per field. Rows written by our services hold
    ``{field: {"old": ..., "new": ...}}``; anything else is shown as the value it holds."""
    recorded = row.changes
    if not isinstance(recorded, dict):
        return [] if recorded in (None, [], "") else [Change(field="", old=None, new=_value(recorded))]
    lines = []
    for name in sorted(recorded):
        value = recorded[name]
        if isinstance(value, dict) and set(value) <= {"old", "new"} and value:
            old = value.get("old")
            lines.append(
                Change(
                    field=name,
                    old=None if old is None and row.action == AuditLog.Action.CREATE else _value(old),
                    new=_value(value.get("new")) if "new" in value else None,
                )
            )
        else:
            lines.append(Change(field=name, old=None, new=_value(value)))
    return lines


# --- keyset pages of one object's rows ---------------------------------------------------------


def cursor_of(row: AuditLog) -> str:
    """A row's place in newest-first order: microseconds since the epoch, and its id."""
    micros = (row.timestamp - _EPOCH) // datetime.timedelta(microseconds=1)
    return f"{micros}_{row.pk}"


def parse_cursor(text: str) -> tuple[datetime.datetime, uuid.UUID]:
    micros, _, pk = text.partition("_")
    try:
        return _EPOCH + datetime.timedelta(microseconds=int(micros)), uuid.UUID(pk)
    except (ValueError, OverflowError):
        raise BadRequest(f"{text!r} is not a history page cursor.") from None


@dataclass(frozen=True)
class HistoryPage:
    rows: list[AuditLog]
    newer: str | None  # cursor for the page of newer rows (None: this is the newest)
    older: str | None  # cursor for the page of older rows (None: this is the oldest)


def history_page(
    rows: QuerySet[AuditLog], *, before: str | None = None, after: str | None = None, size: int = HISTORY_PAGE_SIZE
) -> HistoryPage:
    """A page of ``rows`` (one object's), newest first: the newest, or those just older than
    ``before``, or just newer than ``after``. One statement of ``size + 1`` rows."""
    if before and after:
        raise BadRequest("Give either before or after, not both.")
    if after:
        at, pk = parse_cursor(after)
        found = list(
            rows.filter(Q(timestamp__gt=at) | Q(timestamp=at, pk__gt=pk)).order_by("timestamp", "pk")[: size + 1]
        )
        more_newer = len(found) > size
        page = list(reversed(found[:size]))
        return HistoryPage(
            rows=page,
            newer=cursor_of(page[0]) if page and more_newer else None,
            older=cursor_of(page[-1]) if page else None,
        )
    query = rows
    if before:
        at, pk = parse_cursor(before)
        query = rows.filter(Q(timestamp__lt=at) | Q(timestamp=at, pk__lt=pk))
    found = list(query.order_by("-timestamp", "-pk")[: size + 1])
    page = found[:size]
    return HistoryPage(
        rows=page,
        newer=cursor_of(page[0]) if page and before else None,
        older=cursor_of(page[-1]) if len(found) > size else None,
    )


def rows_for(resource_type: str, resource_id: object) -> QuerySet[AuditLog]:
    return AuditLog.objects.for_resource(resource_type, resource_id)


@dataclass(frozen=True)
class Entry:
    """One audit row as the History page and the recent actions show it."""

    row: AuditLog
    actor: SafeString
    changes: list[Change]
    url: str | None  # the audit entry's own page
    resource_url: str | None
    resource_label: str = ""


def entries(rows: list[AuditLog], *, link_rows: bool, labels: dict[tuple[str, str], str] | None = None) -> list[Entry]:
    emails = emails_for(row.user_id for row in rows)
    labels = labels or {}
    return [
        Entry(
            row=row,
            actor=actor(row, emails),
            changes=changes(row),
            url=reverse("admin:audit_auditlog_change", args=[row.pk]) if link_rows else None,
            resource_url=resource_url(row.resource_type, row.resource_id),
            resource_label=labels.get((row.resource_type, str(row.resource_id)), ""),
        )
        for row in rows
    ]


class AuditHistoryMixin(admin.ModelAdmin[M]):
    """A ModelAdmin whose History page is the object's audit trail. Set ``audit_resource_type``
    to the resource type its service writes (``"user"``, ``"api_key"``, ``"session"``)."""

    audit_resource_type: str = ""
    object_history_template = "admin/audit/object_history.html"

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]  # Django's, not in the stubs
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        # The rows carry addresses and request details: the audit trail's own permission too.
        if not request.user.has_perm("audit.view_auditlog"):
            raise PermissionDenied
        page = history_page(
            rows_for(self.audit_resource_type, obj.pk),
            before=request.GET.get(BEFORE) or None,
            after=request.GET.get(AFTER) or None,
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {obj}",
            "subtitle": None,
            "entries": entries(page.rows, link_rows=True),
            "page": page,
            "newest": not request.GET.get(BEFORE) and not request.GET.get(AFTER),
            "audit_list_url": reverse("admin:audit_auditlog_changelist") + f"?q={obj.pk}",
            "module_name": str(capfirst(self.opts.verbose_name_plural)),
            "object": obj,
            "opts": self.opts,
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.object_history_template, context)

    # The audit row the service writes is the record; LogEntry would be a second, partial one.
    # (Django ignores what these return.)
    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> None:  # type: ignore[override]
        return None

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> None:  # type: ignore[override]
        return None

    def log_deletions(self, request: HttpRequest, queryset: Any) -> None:  # type: ignore[override]
        return None


def recent_actions(user: Any, *, limit: int = RECENT_ACTIONS) -> list[Entry]:
    """The newest audit rows this user wrote as the actor, for the admin index."""
    if not getattr(user, "is_authenticated", False):
        return []
    rows = list(AuditLog.objects.filter(user_id=user.pk).order_by("-timestamp")[:limit])
    may_open = user.has_perm("audit.view_auditlog")
    return entries(rows, link_rows=may_open, labels=resource_labels(rows))
