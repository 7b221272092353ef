from __future__ import annotations

from datetime import timedelta
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import acting_user
from accounts.models import User
from apikeys import services
from apikeys.models import APIKey
from apikeys.serializers import (
    APIKeyCreatedSerializer,
    APIKeyCreateSerializer,
    APIKeyOutputSerializer,
    APIKeyRotateSerializer,
)
from config.api.permissions import granted_scopes, is_admin_request
from config.api.schema import error_responses
from config.api.viewsets import ReplicaListMixin, ServiceViewSet


class APIKeyFilter(django_filters.FilterSet):
    user = django_filters.UUIDFilter(field_name="user_id", label="Owner id (admins see everyone's keys)")
    rate_limit_tier = django_filters.ChoiceFilter(choices=APIKey.Tier.choices)

    class Meta:
        model = APIKey
        fields = ["user", "rate_limit_tier"]


def _created_response(api_key: APIKey, raw: str, **extra: Any) -> dict[str, Any]:
    api_key.key = raw  # type: ignore[attr-defined]  # read by APIKeyCreatedSerializer, never saved
    for name, value in extra.items():
        setattr(api_key, name, value)
    return APIKeyCreatedSerializer(api_key).data


@extend_schema_view(
    list=extend_schema(
        summary="List API keys (your own; admins: everyone's)",
        responses={200: APIKeyOutputSerializer(many=True), **error_responses(400, 401, 403, 404, 429)},
    ),
    retrieve=extend_schema(
        summary="Get an API key", responses={200: APIKeyOutputSerializer, **error_responses(401, 403, 404, 429)}
    ),
)
class APIKeyViewSet(ReplicaListMixin, mixins.RetrieveModelMixin, ServiceViewSet):
    """API keys. Nobody ever sees a key's hash; the raw key appears once, in the create response."""

    queryset = APIKey.objects.none()  # the schema's model; get_queryset() scopes real requests
    serializer_class = APIKeyOutputSerializer
    filterset_class = APIKeyFilter

    def get_queryset(self) -> QuerySet[APIKey]:
        queryset = APIKey.objects.order_by("-created_at")
        if not is_admin_request(self.request):
            queryset = queryset.filter(user=self.request.user)
        return queryset

    @extend_schema(
        summary="Create an API key; the response's `key` is the raw key, shown this once",
        request=APIKeyCreateSerializer,
        responses={201: APIKeyCreatedSerializer, **error_responses(400, 401, 403, 404, 415, 429)},
    )
    def create(self, request: Request) -> Response:
        serializer = APIKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        owner_id = data.pop("user", None)
        owner = acting_user(request)
        if owner_id is not None and is_admin_request(request):
            owner = get_object_or_404(User.objects.all(), pk=owner_id)
        api_key, raw = services.api_key_create(
            actor=acting_user(request), owner=owner, actor_scopes=granted_scopes(request), **data
        )
        return self.respond(_created_response(api_key, raw))

    @extend_schema(
        summary="Revoke an API key",
        responses={204: OpenApiResponse(description="Revoked"), **error_responses(401, 403, 404, 409, 429)},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.api_key_revoke(actor=acting_user(request), api_key=self.get_object())
        return self.respond()

    @extend_schema(
        summary="Rotate an API key: a new key with the same name, scopes and tier",
        request=APIKeyRotateSerializer,
        responses={201: APIKeyCreatedSerializer, **error_responses(400, 401, 403, 404, 409, 415, 429)},
    )
    @action(detail=True, methods=["post"], success_status=201)
    def rotate(self, request: Request, pk: str | None = None) -> Response:
        api_key = self.get_object()
        serializer = APIKeyRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grace = timedelta(seconds=serializer.validated_data["grace_period_seconds"])
        new, raw, old = services.api_key_rotate(actor=acting_user(request), api_key=api_key, grace_period=grace or None)
        return self.respond(
            _created_response(new, raw, rotated_from=old.pk, old_key_expires_at=old.deleted_at or old.expires_at)
        )
