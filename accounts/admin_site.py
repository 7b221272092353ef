"""The admin site: Django's, with a login that is throttled per client address and audited,
and a sign-in with each configured identity provider (accounts.oidc.signin).

Failed logins are counted per client address (``accounts.login_throttle``, shared with the
identity-provider sign-in). Once an address has failed ADMIN_LOGIN_RATE times in the window,
its next attempts are refused with 429 before any password is checked, until the window ends. A failed attempt writes a FAILED_AUTH
audit row, a successful one a LOGIN row, a logout a LOGOUT row.
"""

from __future__ import annotations

from functools import update_wrapper
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse

from accounts.login_throttle import blocked_for, record_failure, too_many_attempts
from accounts.models import User
from audit.history import recent_actions
from audit.models import AuditLog
from audit.services import audit_log_record
from config.admin import dashboard
from config.context import expect_status


class ThrottledAuthenticationForm(AdminAuthenticationForm):
    """The admin login form, refusing throttled clients before it checks any password."""

    throttled_for = 0

    def clean(self) -> dict[str, Any]:
        assert self.request is not None, "the admin passes the request to its login form"
        wait = blocked_for(self.request)
        if wait:
            self.throttled_for = wait
            raise ValidationError(too_many_attempts(wait), code="throttled")
        try:
            return super().clean()
        except ValidationError:
            self._record_failed_attempt()
            raise

    def _record_failed_attempt(self) -> None:
        email = (self.cleaned_data.get("username") or "").strip()
        # The row names the account being tried (if there is one), never the typed text: a
        # password pasted into the email field must not land in the audit trail.
        target = User.objects.with_email(email).values_list("pk", flat=True).first() if email else None
        audit_log_record(
            action=AuditLog.Action.FAILED_AUTH,
            resource_type="user",
            resource_id=target,
            actor=target,
            metadata={"channel": "admin"},
            response_status=200,
        )
        assert self.request is not None
        wait = record_failure(self.request)
        if wait:
            self.throttled_for = wait
            self.add_error(None, too_many_attempts(wait))


class PlatformAdminSite(admin.AdminSite):
    site_header = "Agent platform administration"
    site_title = "Agent platform admin"
    index_title = "Users, API keys, sessions and the audit trail"
    login_form = ThrottledAuthenticationForm
    # Django's login page plus a "Sign in with ..." button per identity provider.
    login_template = "admin/accounts/login.html"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from accounts.oidc import signin

        # Outside admin_view: whoever signs in is not logged in yet.
        return [
            path("sign-in/<str:provider>/", signin.sign_in, name="oidc-sign-in"),
            path("sign-in/<str:provider>/callback/", signin.callback, name="oidc-callback"),
            *super().get_urls(),
        ]

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        """Every admin page, as Django wraps it; and every admin write is audited with the status
        it answers: a POST that changes something succeeds with a redirect (302). Audit rows are
        written inside the change's transaction, before the response exists."""

        def audited_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                expect_status(302)
            return view(request, *args, **kwargs)

        return super().admin_view(update_wrapper(audited_view, view), cacheable)

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """Django's index, with the activity dashboard (the panels this staff member may see)
        and, as recent actions, their own latest audit rows instead of Django's LogEntry."""
        context = {
            "dashboard": dashboard.panels_for(request),
            "recent_actions": recent_actions(request.user),
            **(extra_context or {}),
        }
        return super().index(request, context)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        from accounts.oidc.signin import sign_in_providers

        next_url = request.GET.get("next", "")
        suffix = f"?{urlencode({'next': next_url})}" if next_url else ""
        providers = [
            {"key": p.key, "label": p.label, "url": reverse("admin:oidc-sign-in", args=[p.key]) + suffix}
            for p in sign_in_providers()
        ]
        response = super().login(request, {**(extra_context or {}), "identity_providers": providers})
        if request.method != "POST":
            return response
        if response.status_code == 302 and request.user.is_authenticated:
            audit_log_record(
                action=AuditLog.Action.LOGIN,
                resource_type="user",
                resource_id=request.user.pk,
                actor=request.user,
                metadata={"channel": "admin"},
                response_status=302,
            )
            return response
        form = (getattr(response, "context_data", None) or {}).get("form")
        wait = getattr(form, "throttled_for", 0)
        if wait:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response

    def logout(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        user = request.user
        if request.method == "POST" and user.is_authenticated:
            audit_log_record(
                action=AuditLog.Action.LOGOUT,
                resource_type="user",
                resource_id=user.pk,
                actor=user,
                metadata={"channel": "admin"},
                response_status=200,
            )
        return super().logout(request, extra_context)
