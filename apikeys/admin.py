"""The API key admin: create (raw key shown once), revoke, rotate; the hash is never shown.

Keys are made and retired only through apikeys.services (one audit row each). Creating a key
shows its raw value exactly once, on the page the add form redirects to: the raw key waits
for that page in the staff member's server-side session (never in a message cookie, a log or
an audit row), the page takes it out as it renders, and a reload finds it gone.

Only a platform admin (admin/super_admin role, or superuser) may create or rotate a key of
another user (the rule is apikeys.services'; this page only offers what it allows).
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.authentication import acting_user
from accounts.models import User
from apikeys import services
from apikeys.models import APIKey
from audit.history import AuditHistoryMixin
from config.admin import dashboard
from config.admin.display import identifier, short_datetime
from config.admin.pagination import estimated_count
from config.admin.services import ServiceModelAdmin, ServiceModelForm, adopt, run_for_each
from config.api.permissions import scopes_for

REVEAL_SESSION_PREFIX = "apikeys.admin.reveal."
# A raw key not picked up within this time (the page never loaded) is dropped.
REVEAL_TTL_SECONDS = 600
GRACE_PERIODS = [
    (0, "None: the old key stops working now"),
    (3600, "1 hour"),
    (86400, "24 hours"),
    (7 * 86400, "7 days"),
]


# --- one-time display of raw keys ---


def stash_raw_keys(request: HttpRequest, items: list[dict[str, str]]) -> str:
    """Keep raw keys for the next page only; return the token that page is reached by."""
    now = time.time()
    # SessionBase has keys() but is not iterable itself.
    for name in [n for n in request.session.keys() if n.startswith(REVEAL_SESSION_PREFIX)]:  # noqa: SIM118
        entry = request.session.get(name) or {}
        if now - entry.get("at", 0) > REVEAL_TTL_SECONDS:
            del request.session[name]
    token = secrets.token_urlsafe(16)
    request.session[REVEAL_SESSION_PREFIX + token] = {"at": now, "keys": items}
    return token


def take_raw_keys(request: HttpRequest, token: str) -> list[dict[str, str]] | None:
    """The stashed keys, removed from the session: a second call (a reload) gets None."""
    entry = request.session.pop(REVEAL_SESSION_PREFIX + token, None)
    if not entry or time.time() - entry.get("at", 0) > REVEAL_TTL_SECONDS:
        return None
    return entry.get("keys") or None


def reveal_item(api_key: APIKey, raw: str, *, replaces: APIKey | None = None) -> dict[str, str]:
    return {
        "id": str(api_key.pk),
        "name": api_key.name,
        "owner": api_key.user.email,
        "hint": api_key.key_hint,
        "scopes": ", ".join(api_key.scopes),
        "expires_at": api_key.expires_at.isoformat() if api_key.expires_at else "",
        "replaces": replaces.key_hint if replaces is not None else "",
        "raw": raw,
    }


# --- forms and filters ---


class APIKeyCreateForm(ServiceModelForm):
    scopes = forms.MultipleChoiceField(
        choices=APIKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[APIKey.Scope.READ.value],
        help_text="read: GET requests; write: changes; admin: the admin endpoints (only for an owner "
        "with the admin or super admin role).",
    )

    class Meta:
        model = APIKey
        fields = ["user", "name", "scopes", "rate_limit_tier", "expires_at"]
        labels = {"user": "Owner"}
        help_texts = {"expires_at": "Leave empty for a key that never expires."}


class APIKeyViewForm(forms.ModelForm):
    """The change page's form: nothing on a key is edited in place."""

    class Meta:
        model = APIKey
        fields: list[str] = []


class KeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return list(APIKey.State.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> QuerySet[APIKey]:
        value = self.value()
        if value in APIKey.State.values:
            return queryset.in_state(value)  # type: ignore[attr-defined]
        return queryset


class RotateForm(forms.Form):
    grace_period = forms.TypedChoiceField(
        choices=GRACE_PERIODS,
        coerce=int,
        initial=0,
        label="Old key keeps working for",
        help_text="A grace period lets clients switch to the new key before the old one stops.",
    )


@admin.register(APIKey)
class APIKeyAdmin(AuditHistoryMixin[APIKey], ServiceModelAdmin[APIKey]):
    audit_resource_type = services.RESOURCE
    form = APIKeyCreateForm
    list_display = (
        "name",
        "owner",
        "hint_display",
        "scopes_display",
        "tier_display",
        "last_used_display",
        "expires_display",
        "state_display",
    )
    list_filter = ("rate_limit_tier", KeyStateFilter)
    list_select_related = ("user",)
    search_fields = ("name", "user__email", "key_hint")
    search_help_text = "Key name, owner email or display hint (contains)."
    ordering = ("-created_at",)
    list_per_page = 50
    show_facets = admin.ShowFacets.NEVER
    actions = ("revoke_keys", "rotate_keys")
    # Never key_hash: not in any form, column or read-only field.
    readonly_on_change = (
        "name",
        "owner",
        "key_hint",
        "scopes_display",
        "rate_limit_tier",
        "state_display",
        "expires_at",
        "last_used_at",
        "created_at",
        "deleted_at",
        "id",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[APIKey]:
        queryset = APIKey.all_objects.select_related("user")
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    # --- permissions ---

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoking replaces Django's delete (which would skip the service and its audit row).
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        # Revoking is this model's delete.
        return request.user.has_perm("apikeys.delete_apikey")

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def get_autocomplete_fields(self, request: HttpRequest) -> tuple[str, ...]:
        return ("user",) if acting_user(request).is_platform_admin else ()

    # --- the add form; the change page is read-only ---

    def get_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        if obj is None:
            return ["user", "name", "scopes", "rate_limit_tier", "expires_at"]
        return list(self.readonly_on_change)

    def get_readonly_fields(self, request: HttpRequest, obj: APIKey | None = None) -> tuple[str, ...]:
        return self.readonly_on_change if obj is not None else ()

    def get_form(self, request: HttpRequest, obj: APIKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["form"] = APIKeyViewForm
        return super().get_form(request, obj, change=change, **kwargs)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            owners = User.objects.filter(is_active=True)
            staff = acting_user(request)
            if not staff.is_platform_admin:
                owners = owners.filter(pk=staff.pk)
                kwargs["initial"] = staff.pk
            kwargs["queryset"] = owners
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def render_change_form(  # type: ignore[override]  # passes form_url and obj through kwargs
        self, request: HttpRequest, context: dict[str, Any], add: bool = False, change: bool = False, **kwargs: Any
    ) -> HttpResponse:
        if not add:
            # Nothing on a key is edited in place: revoke or rotate it instead.
            context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
            context.update(show_delete=False, can_revoke=self.has_revoke_permission(request))
            context["can_rotate"] = self.has_rotate_permission(request)
        return super().render_change_form(request, context, add=add, change=change, **kwargs)

    def save_with_service(self, request: HttpRequest, obj: APIKey, form: ModelForm, change: bool) -> None:
        if change:
            return  # the change page has no editable fields
        data = form.cleaned_data
        api_key, raw = services.api_key_create(
            actor=acting_user(request),
            actor_scopes=scopes_for(request.user),
            owner=data["user"],
            name=data["name"],
            scopes=data["scopes"],
            rate_limit_tier=data["rate_limit_tier"],
            expires_at=data.get("expires_at"),
        )
        adopt(obj, api_key)
        obj._raw_key_for_reveal = raw  # type: ignore[attr-defined]  # read once by response_add, then gone

    def response_add(self, request: HttpRequest, obj: APIKey, post_url_continue: str | None = None) -> HttpResponse:
        raw = obj.__dict__.pop("_raw_key_for_reveal", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        token = stash_raw_keys(request, [reveal_item(obj, raw)])
        return HttpResponseRedirect(reverse("admin:apikeys_apikey_reveal", args=[token]))

    # --- list columns and read-only fields ---

    @admin.display(description="owner", ordering="user__email")
    def owner(self, obj: APIKey) -> SafeString:
        url = reverse("admin:accounts_user_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, identifier(obj.user.email))

    @admin.display(description="hint")
    def hint_display(self, obj: APIKey) -> SafeString:
        return identifier(obj.key_hint)

    @admin.display(description="tier", ordering="rate_limit_tier")
    def tier_display(self, obj: APIKey) -> str:
        return obj.get_rate_limit_tier_display()

    @admin.display(description="last used", ordering="last_used_at")
    def last_used_display(self, obj: APIKey) -> SafeString | str:
        return short_datetime(obj.last_used_at)

    @admin.display(description="expires", ordering="expires_at")
    def expires_display(self, obj: APIKey) -> SafeString | str:
        return short_datetime(obj.expires_at) if obj.expires_at else "never"

    @admin.display(description="scopes")
    def scopes_display(self, obj: APIKey) -> str:
        return ", ".join(obj.scopes or []) or "—"

    @admin.display(description="state")
    def state_display(self, obj: APIKey) -> SafeString:
        return format_html('<span class="key-state key-state-{}">{}</span>', obj.state, obj.state)

    # --- actions: one service call (and one audit row) per key ---

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> HttpResponse | None:
        keys = list(queryset.select_related("user"))
        if request.POST.get("confirm") != "yes":
            return self._confirm(request, keys, action="revoke_keys", title="Revoke API keys")
        run_for_each(
            request,
            keys,
            lambda key: services.api_key_revoke(actor=acting_user(request), api_key=key),
            done="Revoked",
            noun=("API key", "API keys"),
            skip=lambda key: "already revoked." if key.deleted_at is not None else None,
        )
        return None

    @admin.action(description="Rotate selected API keys (shows the new keys once)", permissions=["rotate"])
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> HttpResponse | None:
        keys = list(queryset.select_related("user"))
        form = RotateForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if not form.is_bound or not form.is_valid():
            return self._confirm(request, keys, action="rotate_keys", title="Rotate API keys", form=form)
        grace = form.cleaned_data["grace_period"]
        revealed: list[dict[str, str]] = []

        def rotate(key: APIKey) -> None:
            new, raw, old = services.api_key_rotate(
                actor=acting_user(request), api_key=key, grace_period=timedelta(seconds=grace) if grace else None
            )
            revealed.append(reveal_item(new, raw, replaces=old))

        run_for_each(request, keys, rotate, done="Rotated", noun=("API key", "API keys"))
        if not revealed:
            return None
        token = stash_raw_keys(request, revealed)
        return HttpResponseRedirect(reverse("admin:apikeys_apikey_reveal", args=[token]))

    def _confirm(
        self, request: HttpRequest, keys: list[APIKey], *, action: str, title: str, form: forms.Form | None = None
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "keys": keys,
            "action": action,
            "form": form,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/apikeys/apikey/confirm_action.html", context)

    # --- the one-time key page ---

    def get_urls(self) -> list[URLPattern]:
        return [
            path("revealed/<str:token>/", self.admin_site.admin_view(self.reveal_view), name="apikeys_apikey_reveal"),
            *super().get_urls(),
        ]

    def reveal_view(self, request: HttpRequest, token: str) -> HttpResponse:
        # admin_view() adds never_cache: the browser keeps no copy of this page either.
        if not self.has_view_permission(request):
            raise PermissionDenied
        keys = take_raw_keys(request, token)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created" if keys and len(keys) == 1 and not keys[0]["replaces"] else "API keys",
            "subtitle": None,
            "opts": self.opts,
            "keys": keys,
        }
        request.current_app = self.admin_site.name
        response = TemplateResponse(request, "admin/apikeys/apikey/key_revealed.html", context)
        response["Referrer-Policy"] = "no-referrer"
        return response


# --- the admin index's activity panel -----------------------------------------------------------

EXPIRY_WARNING = timedelta(days=7)


@dashboard.register(order=30)
def keys_panel(request: HttpRequest) -> dashboard.Panel | None:
    """Active keys, and those of them that stop working within a week."""
    if not request.user.has_perm("apikeys.view_apikey"):
        return None
    active = APIKey.objects.in_state(APIKey.State.ACTIVE)
    changelist = reverse("admin:apikeys_apikey_changelist")
    count, approximate = estimated_count(active)
    expiring, expiring_approximate = estimated_count(active.filter(expires_at__lte=timezone.now() + EXPIRY_WARNING))
    return dashboard.Panel(
        title="API keys",
        figures=[
            dashboard.Figure("active API keys", count, approximate, url=f"{changelist}?state=active"),
            dashboard.Figure("keys expiring within 7 days", expiring, expiring_approximate),
        ],
    )
