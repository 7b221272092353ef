"""The bases every API view derives from.

* Filters, search and ordering apply to the ``list`` action only.
* Each action's success status is known before the action runs, and written into the request
  context for the audit writer: audit rows are written inside the operation's transaction,
  before the response exists, and must still record the status the client gets. ``respond()``
  answers with that same status, so the two cannot disagree. ``create`` answers 201,
  ``destroy`` 204, everything else 200; an ``@action(..., success_status=201)`` says otherwise.
* ``ReplicaListMixin``: a ``list`` that tolerates replication lag, served by a read replica when
  one is fit (config.db.replicas); authentication, permissions and throttles ran on the primary.
"""

from __future__ import annotations

from typing import Any

from rest_framework import generics, mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from config.context import expect_status
from config.db.replicas import replica_read, request_principal

ACTION_STATUSES = {"create": 201, "destroy": 204}
METHOD_STATUSES = {"POST": 201, "DELETE": 204}


class ExpectedStatusMixin(generics.GenericAPIView):
    # Set per action through @action(success_status=...), which DRF passes to the view instance.
    success_status: int | None = None

    @property
    def expected_status(self) -> int:
        if self.success_status is not None:
            return self.success_status
        action = getattr(self, "action", None)
        if action is not None:
            return ACTION_STATUSES.get(action, 200)
        return METHOD_STATUSES.get(self.request.method or "GET", 200)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        expect_status(self.expected_status)

    def respond(self, data: Any = None, **kwargs: Any) -> Response:
        return Response(data, status=self.expected_status, **kwargs)


class ListFiltersOnlyMixin(generics.GenericAPIView):
    """DRF's ``get_object()`` runs every filter backend on detail routes too, so each GET, PATCH,
    DELETE or action on one object built a django-filter FilterSet and its form for nothing: a
    detail URL names its object, and access is scoped in ``get_queryset()``, not by filters."""

    def filter_queryset(self, queryset: Any) -> Any:
        if getattr(self, "action", None) != "list":
            return queryset
        return super().filter_queryset(queryset)


class ReplicaListMixin(mixins.ListModelMixin):
    """DRF's list, read from a fit replica unless the caller wrote within REPLICA_STICKY_SECONDS."""

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return replica_read(
            request_principal(request), lambda: super(ReplicaListMixin, self).list(request, *args, **kwargs)
        )


class ServiceViewSet(ExpectedStatusMixin, ListFiltersOnlyMixin, viewsets.GenericViewSet):
    """A viewset whose writes go through services; compose it with the mixins an endpoint needs."""


class ServiceAPIView(ExpectedStatusMixin):
    """A single-route view whose writes go through services (POST answers 201, DELETE 204)."""
