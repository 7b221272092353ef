"""Admin pages whose writes go through the apps' services.

A ModelAdmin never saves a model itself: its ``save_with_service`` calls the service, which
writes the audit row in the same transaction. A rule the service enforces (an email already
taken, a scope the owner may not hold) comes back as ``InvalidInput``/``StateConflict``; the
form is shown again with that message on the field it names, never a 500.

Admin actions call a service once per selected object, so each object changed gets its own
audit row; refusals become warning messages and the rest still go ahead. (The status those
audit rows record, the redirect that follows a successful admin POST, is set once for every
admin view by the site: ``accounts.admin_site.PlatformAdminSite.admin_view``.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR
from django.contrib.admin.utils import unquote
from django.db import models
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse

from config.admin.replicas import ReplicaChangeListMixin
from config.errors import DomainError

M = TypeVar("M", bound=models.Model)


class ServiceRefused(Exception):
    """A service refused the save; the form now carries the reason."""

    def __init__(self, form: ModelForm[Any]) -> None:
        super().__init__("service refused the save")
        self.form = form


class ServiceModelForm(ModelForm[Any]):
    """Field validation only: uniqueness and the other rules are the service's (one place each)."""

    def validate_unique(self) -> None:
        pass

    def validate_constraints(self) -> None:
        pass


def adopt(target: models.Model, saved: models.Model) -> None:
    """Make the admin's unsaved instance into the row the service saved (for log and redirect)."""
    for field in saved._meta.concrete_fields:
        setattr(target, field.attname, getattr(saved, field.attname))
    target._state.adding = False
    target._state.db = saved._state.db


class ServiceModelAdmin(ReplicaChangeListMixin[M]):
    """A ModelAdmin whose saves go through a service: implement ``save_with_service``; its change
    list is read from a replica when one is fit."""

    # A service's error field -> the form field that shows it (default: the same name).
    service_error_fields: dict[str, str] = {}

    def save_with_service(self, request: HttpRequest, obj: M, form: ModelForm[Any], change: bool) -> None:
        raise NotImplementedError

    def save_model(self, request: HttpRequest, obj: M, form: ModelForm[Any], change: bool) -> None:
        try:
            self.save_with_service(request, obj, form, change)
        except DomainError as exc:
            field = self.service_error_fields.get(exc.field or "", exc.field)
            form.add_error(field if field in form.fields else None, exc.message)
            raise ServiceRefused(form) from exc

    def save_related(self, request: HttpRequest, form: ModelForm[Any], formsets: Any, change: bool) -> None:
        # Many-to-many fields are not edited through these pages; nothing saves behind a service.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefused as refused:
            return self._render_refused(request, refused.form, object_id, form_url, extra_context)

    def _render_refused(
        self,
        request: HttpRequest,
        form: ModelForm[Any],
        object_id: str | None,
        form_url: str,
        extra_context: dict[str, Any] | None,
    ) -> HttpResponse:
        """Show the form again with the service's reason, as the admin shows a validation error."""
        add = object_id is None
        obj = None if object_id is None else self.get_object(request, unquote(object_id))
        fieldsets = self.get_fieldsets(request, obj)
        admin_form = helpers.AdminForm(
            form,
            list(fieldsets),  # type: ignore[arg-type]  # AdminForm accepts the fieldsets ModelAdmin returns
            self.get_prepopulated_fields(request, obj) if add or self.has_change_permission(request, obj) else {},
            self.get_readonly_fields(request, obj),
            model_admin=self,
        )
        title = "Add %s" if add else "Change %s"
        context = {
            **self.admin_site.each_context(request),
            "title": title % self.opts.verbose_name,
            "subtitle": str(obj) if obj else None,
            "adminform": admin_form,
            "object_id": object_id,
            "original": obj,
            "is_popup": IS_POPUP_VAR in request.POST or IS_POPUP_VAR in request.GET,
            "to_field": request.POST.get(TO_FIELD_VAR, request.GET.get(TO_FIELD_VAR)),
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=add, change=not add, obj=obj, form_url=form_url)


def run_for_each(
    request: HttpRequest,
    objects: Iterable[M],
    operation: Callable[[M], Any],
    *,
    done: str,
    noun: tuple[str, str],
    skip: Callable[[M], str | None] | None = None,
) -> int:
    """Call ``operation`` (a service call) for each object, one transaction and audit row each.

    ``skip`` returns a reason to leave an object alone (shown as a warning). A service's
    refusal is a warning naming the object; the others still go ahead. Returns how many
    succeeded and reports that count as a success message (``done`` is the past tense verb,
    ``noun`` the singular and plural).
    """
    succeeded = 0
    for obj in objects:
        reason = skip(obj) if skip is not None else None
        if reason:
            messages.warning(request, f"{obj}: {reason}")
            continue
        try:
            operation(obj)
        except DomainError as exc:
            messages.warning(request, f"{obj}: {exc.message}")
            continue
        succeeded += 1
    if succeeded:
        messages.success(request, f"{done} {succeeded} {noun[0] if succeeded == 1 else noun[1]}.")
    return succeeded
