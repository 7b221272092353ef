from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins

from audit.models import AuditLog
from audit.serializers import AuditLogOutputSerializer
from config.api.pagination import ValidatedCursorPagination
from config.api.permissions import IsPlatformAdmin
from config.api.schema import error_responses
from config.api.viewsets import ReplicaListMixin, ServiceViewSet


class AuditLogFilter(django_filters.FilterSet):
    user_id = django_filters.UUIDFilter(label="The actor's user id")
    action = django_filters.ChoiceFilter(choices=AuditLog.Action.choices)
    resource_type = django_filters.CharFilter(max_length=100)
    resource_id = django_filters.CharFilter(max_length=255)
    request_id = django_filters.UUIDFilter()
    since = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte", label="timestamp >= since")
    until = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lte", label="timestamp <= until")

    class Meta:
        model = AuditLog
        fields = ["user_id", "action", "resource_type", "resource_id", "request_id", "since", "until"]


class AuditLogPagination(ValidatedCursorPagination):
    ordering = ("-timestamp", "-id")
    page_size = 50
    max_page_size = 200


@extend_schema_view(
    list=extend_schema(
        summary="The audit trail, newest first (admin)",
        responses={200: AuditLogOutputSerializer(many=True), **error_responses(400, 401, 403, 429)},
    ),
    retrieve=extend_schema(
        summary="One audit row (admin)",
        responses={200: AuditLogOutputSerializer, **error_responses(401, 403, 404, 429)},
    ),
)
class AuditLogViewSet(ReplicaListMixin, mixins.RetrieveModelMixin, ServiceViewSet):
    queryset = AuditLog.objects.none()  # the schema's model; get_queryset() scopes real requests
    serializer_class = AuditLogOutputSerializer
    permission_classes = [IsPlatformAdmin]
    filterset_class = AuditLogFilter
    pagination_class = AuditLogPagination

    def get_queryset(self) -> QuerySet[AuditLog]:
        return AuditLog.objects.all()
