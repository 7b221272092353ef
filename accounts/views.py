from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import filters, mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services
from accounts.authentication import acting_user
from accounts.models import User, UserQuerySet
from accounts.roles import Role
from accounts.serializers import UserCreateSerializer, UserOutputSerializer, UserUpdateSerializer
from config.api.filters import FilterBackend, StrictBooleanField, StrictBooleanFilter
from config.api.permissions import HasScopeForMethod, IsPlatformAdmin
from config.api.schema import error_responses
from config.api.viewsets import ReplicaListMixin, ServiceViewSet

DELETED_HELP = "true: only soft-deleted users; false (default): only live ones"


class UserFilter(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=Role.choices, method="filter_role")
    group = django_filters.CharFilter(method="filter_group", max_length=100)
    provider = django_filters.ChoiceFilter(choices=User.Provider.choices)
    is_active = StrictBooleanFilter()
    deleted = StrictBooleanFilter(method="filter_deleted", label=DELETED_HELP)

    class Meta:
        model = User
        fields = ["role", "group", "provider", "is_active", "deleted"]

    def filter_role(self, queryset: UserQuerySet, name: str, value: str) -> UserQuerySet:
        return queryset.with_role(value)

    def filter_group(self, queryset: UserQuerySet, name: str, value: str) -> UserQuerySet:
        return queryset.in_group(value)

    # A method filter hides its type from the schema; say it here, description included.
    @extend_schema_field({"type": "boolean", "description": DELETED_HELP})
    def filter_deleted(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        return queryset  # applied in UserViewSet.filter_queryset, which must see it even when absent


@extend_schema_view(
    list=extend_schema(
        summary="List users (admin)",
        responses={200: UserOutputSerializer(many=True), **error_responses(400, 401, 403, 404, 429)},
    ),
    retrieve=extend_schema(
        summary="Get a user (admin)", responses={200: UserOutputSerializer, **error_responses(401, 403, 404, 429)}
    ),
)
class UserViewSet(ReplicaListMixin, mixins.RetrieveModelMixin, ServiceViewSet):
    """Platform users. Admin only (an admin-scoped key of an admin user), except ``me``."""

    queryset = User.objects.none()  # the schema's model; get_queryset() scopes real requests
    serializer_class = UserOutputSerializer
    permission_classes = [IsPlatformAdmin]
    filterset_class = UserFilter
    filter_backends = [FilterBackend, filters.SearchFilter]
    search_fields = ["email", "name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[User]:
        return User.all_objects.order_by("-created_at")

    def filter_queryset(self, queryset: Any) -> Any:
        queryset = super().filter_queryset(queryset)
        if self.action == "list":
            # Already validated by the filterset: true, false, or absent.
            deleted = StrictBooleanField().to_python(self.request.query_params.get("deleted")) is True
            queryset = queryset.filter(deleted_at__isnull=not deleted)
        return queryset

    def get_permissions(self) -> Sequence[Any]:
        if self.action == "me":
            return [HasScopeForMethod()]
        return super().get_permissions()

    @extend_schema(
        summary="Create a user (admin)",
        request=UserCreateSerializer,
        responses={201: UserOutputSerializer, **error_responses(400, 401, 403, 415, 429)},
    )
    def create(self, request: Request) -> Response:
        serializer = UserCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_create(actor=acting_user(request), **serializer.validated_data)
        return self.respond(UserOutputSerializer(user).data)

    @extend_schema(
        summary="Change a user (admin)",
        request=UserUpdateSerializer,
        responses={200: UserOutputSerializer, **error_responses(400, 401, 403, 404, 409, 415, 429)},
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        serializer = UserUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_update(actor=acting_user(request), user=user, **serializer.validated_data)
        return self.respond(UserOutputSerializer(user).data)

    @extend_schema(
        summary="Soft-delete a user (admin): deactivates them and revokes their keys",
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(400, 401, 403, 404, 409, 429)},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.user_soft_delete(actor=acting_user(request), user=self.get_object())
        return self.respond()

    @extend_schema(
        summary="Restore a soft-deleted user (admin)",
        request=None,
        responses={200: UserOutputSerializer, **error_responses(400, 401, 403, 404, 409, 429)},
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        user = services.user_restore(actor=acting_user(request), user=self.get_object())
        return self.respond(UserOutputSerializer(user).data)

    @extend_schema(
        summary="The caller's own user", responses={200: UserOutputSerializer, **error_responses(401, 403, 429)}
    )
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def me(self, request: Request) -> Response:
        return self.respond(UserOutputSerializer(request.user).data)
