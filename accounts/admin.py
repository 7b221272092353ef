"""The user admin: Django's user admin, over our User (roles, directory groups, soft delete).

Every write goes through accounts.services (one audit row each). Soft-deleted users are
hidden unless the "deleted" filter asks for them; Django's hard delete is not offered.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.utils import unquote
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.forms import ReadOnlyPasswordHashWidget
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts import services
from accounts.admin_forms import PasswordChangeForm, UserChangeForm, UserCreationForm
from accounts.authentication import acting_user
from accounts.models import User, UserQuerySet
from accounts.roles import Role
from audit.history import AuditHistoryMixin
from config.admin import dashboard
from config.admin.display import identifier, short_datetime
from config.admin.filters import SoftDeleteFilter
from config.admin.pagination import estimated_count
from config.admin.services import ServiceModelAdmin, adopt, run_for_each
from config.errors import DomainError

# Our User.groups are directory group names, not Django's permission groups, which nothing
# here uses: their admin page would only mislead.
with contextlib.suppress(NotRegistered):
    admin.site.unregister(Group)

EDITABLE = ("email", "name", "provider", "provider_user_id", "roles", "groups", "is_active", "is_staff", "is_superuser")


class RoleFilter(admin.SimpleListFilter):
    title = "role"
    parameter_name = "role"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return list(Role.choices)

    def queryset(self, request: HttpRequest, queryset: Any) -> UserQuerySet:
        value = self.value()
        if value in Role.values:
            return queryset.with_role(value)  # roles @> '["x"]', served by the GIN index
        return queryset


@admin.register(User)
class UserAdmin(AuditHistoryMixin[User], ServiceModelAdmin[User]):
    audit_resource_type = services.RESOURCE
    form = UserChangeForm
    add_form = UserCreationForm
    list_display = (
        "email_display",
        "name",
        "provider",
        "roles_display",
        "active_display",
        "staff_display",
        "created_display",
        "is_deleted_display",
    )
    list_display_links = ("email_display",)
    list_filter = ("provider", "is_active", "is_staff", RoleFilter, SoftDeleteFilter)
    search_fields = ("email", "name", "provider_user_id")
    search_help_text = "Email, name or provider user id (contains)."
    ordering = ("-created_at",)
    list_per_page = 50
    show_facets = admin.ShowFacets.NEVER
    actions = ("activate_users", "deactivate_users", "soft_delete_users", "restore_users")
    service_error_fields = {"password": "password1"}
    change_password_form = PasswordChangeForm

    # --- queryset and permissions ---

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        queryset = User.all_objects.get_queryset()
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if request.path == reverse("admin:autocomplete"):
            # Picking an owner (API key form): only users who can own something.
            queryset = queryset.filter(deleted_at__isnull=True, is_active=True)
        return queryset, may_have_duplicates

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Django's delete would bypass the service; the soft delete action replaces it.
        return False

    def has_soft_delete_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.delete_user")

    # --- form ---

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None) -> Any:
        superuser = request.user.is_superuser
        if obj is None:
            return [
                (None, {"fields": ["email", "name", "provider", "provider_user_id"]}),
                ("Password", {"fields": ["password1", "password2"]}),
                ("Roles and groups", {"fields": ["roles", "groups"]}),
                (
                    "Status",
                    {"fields": ["is_active", "is_staff", "is_superuser"] if superuser else ["is_active", "is_staff"]},
                ),
            ]
        return [
            (None, {"fields": ["email", "name", "provider", "provider_user_id", "password_display"]}),
            ("Roles and groups", {"fields": ["roles", "groups"]}),
            ("Status", {"fields": ["is_active", "is_staff", "is_superuser", "deleted_at"]}),
            ("Permissions", {"fields": ["extra_permissions"], "classes": ["collapse"]}),
            ("History", {"fields": ["api_keys_link", "last_login", "created_at", "updated_at", "id"]}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> list[str]:
        if obj is None:
            return []
        readonly = ["password_display", "deleted_at", "extra_permissions", "api_keys_link", "last_login"]
        readonly += ["created_at", "updated_at", "id"]
        if not request.user.is_superuser:
            # Only a superuser makes superusers (and the field is shown, not hidden, to others).
            readonly.append("is_superuser")
        return readonly

    def get_form(
        self, request: HttpRequest, obj: User | None = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm]:
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def save_with_service(self, request: HttpRequest, obj: User, form: ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = services.user_create(
                actor=acting_user(request),
                email=data["email"],
                name=data["name"],
                provider=data["provider"],
                provider_user_id=data.get("provider_user_id") or "",
                roles=data.get("roles") or [],
                groups=data.get("groups") or [],
                password=data.get("password1") or None,
                is_active=data.get("is_active", True),
                is_staff=data.get("is_staff", False),
                is_superuser=data.get("is_superuser", False) if request.user.is_superuser else False,
            )
            adopt(obj, created)
            return
        changed = {name: data[name] for name in form.changed_data if name in EDITABLE and name in data}
        if "is_superuser" in changed and not request.user.is_superuser:
            raise PermissionDenied
        if changed:
            adopt(obj, services.user_update(actor=acting_user(request), user=obj, **changed))

    # --- list columns and read-only fields ---

    @admin.display(description="email", ordering="email")
    def email_display(self, obj: User) -> SafeString:
        return identifier(obj.email)

    @admin.display(description="active", boolean=True, ordering="is_active")
    def active_display(self, obj: User) -> bool:
        return obj.is_active

    @admin.display(description="staff", boolean=True, ordering="is_staff")
    def staff_display(self, obj: User) -> bool:
        return obj.is_staff

    @admin.display(description="created", ordering="created_at")
    def created_display(self, obj: User) -> SafeString | str:
        return short_datetime(obj.created_at)

    @admin.display(description="roles")
    def roles_display(self, obj: User) -> str:
        return ", ".join(obj.roles or []) or "—"

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def is_deleted_display(self, obj: User) -> bool:
        return obj.deleted_at is not None

    @admin.display(description="password")
    def password_display(self, obj: User) -> SafeString:
        if obj.is_oauth_user:
            return format_html("Signs in with {}; an OAuth user cannot have a password.", obj.get_provider_display())
        # Django's summary (algorithm, masked salt and hash) with its "Set/Reset password" button.
        return ReadOnlyPasswordHashWidget().render("password", obj.password)

    @admin.display(description="explicit permissions")
    def extra_permissions(self, obj: User) -> SafeString | str:
        perms = sorted(
            f"{p.content_type.app_label}.{p.codename}" for p in obj.user_permissions.select_related("content_type")
        )
        if not perms:
            return "None: this user's admin permissions come from their roles."
        return format_html_join(", ", "{}", ((p,) for p in perms))

    @admin.display(description="API keys")
    def api_keys_link(self, obj: User) -> SafeString:
        url = reverse("admin:apikeys_apikey_changelist") + f"?user={obj.pk}"
        return format_html('<a href="{}">This user’s API keys</a>', url)

    # --- actions: one service call (and one audit row) per user ---

    @admin.action(description="Activate selected users", permissions=["change"])
    def activate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        run_for_each(
            request,
            queryset,
            lambda user: services.user_set_active(actor=acting_user(request), user=user, active=True),
            done="Activated",
            noun=("user", "users"),
            skip=lambda user: "already active." if user.is_active else None,
        )

    @admin.action(description="Deactivate selected users", permissions=["change"])
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        run_for_each(
            request,
            queryset,
            lambda user: services.user_set_active(actor=acting_user(request), user=user, active=False),
            done="Deactivated",
            noun=("user", "users"),
            skip=lambda user: "already inactive." if not user.is_active else None,
        )

    @admin.action(description="Soft-delete selected users (revokes their API keys)", permissions=["soft_delete"])
    def soft_delete_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        run_for_each(
            request,
            queryset,
            lambda user: services.user_soft_delete(actor=acting_user(request), user=user),
            done="Soft-deleted",
            noun=("user", "users"),
        )

    @admin.action(description="Restore selected deleted users", permissions=["soft_delete"])
    def restore_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        run_for_each(
            request,
            queryset,
            lambda user: services.user_restore(actor=acting_user(request), user=user),
            done="Restored",
            noun=("user", "users"),
        )

    # --- the password page (Django's UserAdmin flow, saved through the service) ---

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<id>/password/",
                self.admin_site.admin_view(self.user_change_password),
                name="accounts_user_password_change",
            ),
            *super().get_urls(),
        ]

    def user_change_password(self, request: HttpRequest, id: str) -> HttpResponse:
        user = self.get_object(request, unquote(id))
        if user is None:
            raise Http404("No such user.")
        if not self.has_change_permission(request, user):
            raise PermissionDenied
        if user.is_superuser and not request.user.is_superuser:
            raise PermissionDenied
        change_url = reverse("admin:accounts_user_change", args=[user.pk])
        if user.is_oauth_user:
            messages.error(
                request,
                f"{user.email} signs in with {user.get_provider_display()}; an OAuth user cannot have a password.",
            )
            return HttpResponseRedirect(change_url)
        if user.deleted_at is not None:
            messages.error(request, f"{user.email} is deleted; restore the user first.")
            return HttpResponseRedirect(change_url)
        form = self.change_password_form(user, request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                updated = services.user_set_password(
                    actor=acting_user(request), user=user, password=form.cleaned_data["password1"]
                )
            except DomainError as exc:
                form.add_error("password1", exc.message)
            else:
                messages.success(request, "Password changed successfully.")
                if updated.pk == request.user.pk:
                    update_session_auth_hash(request, updated)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{'Change' if user.has_usable_password() else 'Set'} password: {user.email}",
            "form": form,
            "adminForm": admin.helpers.AdminForm(form, [(None, {"fields": list(form.fields)})], {}),  # type: ignore[arg-type]
            "opts": self.opts,
            "original": user,
            "is_popup": False,
            "has_change_permission": True,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/accounts/user/change_password.html", context)


@dashboard.register(order=10)
def users_panel(request: HttpRequest) -> dashboard.Panel | None:
    """How many live users there are (exact up to 10,000, then the planner's estimate)."""
    if not request.user.has_perm("accounts.view_user"):
        return None
    count, approximate = estimated_count(User.objects.all())
    url = reverse("admin:accounts_user_changelist")
    return dashboard.Panel(title="Users", figures=[dashboard.Figure("users", count, approximate, url=url)])
