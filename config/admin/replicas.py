"""Admin change lists read from a replica (config.db.replicas): they tolerate a second of lag."""

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib import admin
from django.db import models
from django.http import HttpRequest, HttpResponse

from config.db.replicas import replica_read, request_principal

M = TypeVar("M", bound=models.Model)


class ReplicaChangeListMixin(admin.ModelAdmin[M]):
    """A change list page (GET) served by a fit replica, unless the staff member wrote within
    REPLICA_STICKY_SECONDS. The staff member and their session are loaded from the primary first;
    the page is rendered inside, since a TemplateResponse runs its queries when it renders."""

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):  # actions are writes
            return super().changelist_view(request, extra_context)
        principal = request_principal(request)

        def page() -> HttpResponse:
            response = super(ReplicaChangeListMixin, self).changelist_view(request, extra_context)
            render = getattr(response, "render", None)
            if render is not None:
                render()
            return response

        return replica_read(principal, page)
