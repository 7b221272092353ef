from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import filters, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import Cursor
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from accounts.authentication import acting_user
from accounts.models import User
from agent_sessions import services
from agent_sessions.models import Message, Session
from agent_sessions.queries import MessagePage, live_session
from agent_sessions.serializers import (
    MessageAppendSerializer,
    MessageBatchSerializer,
    MessageClearSerializer,
    MessageOutputSerializer,
    MessagePopSerializer,
    SessionCancelSerializer,
    SessionCompleteSerializer,
    SessionCreateSerializer,
    SessionFailSerializer,
    SessionOutputSerializer,
    SessionStatsSerializer,
    SessionTransferSerializer,
    SessionUpdateSerializer,
)
from config.api.filters import FilterBackend
from config.api.pagination import ValidatedCursorPagination
from config.api.parsers import ItemJSONParser
from config.api.permissions import IsPlatformAdmin, is_admin_request
from config.api.renderers import RawJSONRenderer
from config.api.schema import error_responses
from config.api.viewsets import ReplicaListMixin, ServiceAPIView, ServiceViewSet
from config.db.replicas import replica_read, request_principal
from idempotency.api import idempotent, idempotent_append
from idempotency.models import KeyClaim


class SessionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Session.Status.choices)
    agent_id = django_filters.CharFilter(max_length=255)
    external_id = django_filters.CharFilter(max_length=255)
    user = django_filters.UUIDFilter(field_name="user_id", label="Owner id (admins see everyone's sessions)")

    class Meta:
        model = Session
        fields = ["status", "agent_id", "external_id", "user"]


class SessionOrdering(filters.OrderingFilter):
    """`ordering=last_activity_at|-last_activity_at|created_at|-created_at`; anything else is a 400."""

    ordering_fields = ["last_activity_at", "created_at"]

    def remove_invalid_fields(self, queryset: Any, fields: Any, view: Any, request: Request) -> list[str]:
        valid = super().remove_invalid_fields(queryset, fields, view, request)
        if len(valid) != len(fields):
            raise ValidationError(
                {
                    self.ordering_param: [
                        f"Order by one of: {', '.join(self.ordering_fields)} (prefix - for descending)."
                    ]
                }
            )
        return valid

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        names = "|".join(self.ordering_fields)
        for parameter in parameters:
            if parameter["name"] == self.ordering_param:
                # Anything else is a 400, so the schema says which values exist.
                parameter["schema"] = {"type": "string", "pattern": f"^-?({names})(,-?({names}))*$"}
        return parameters


def _owned_sessions(request: Request) -> QuerySet[Session]:
    queryset = Session.objects.all()
    if not is_admin_request(request):
        queryset = queryset.filter(user=request.user)
    return queryset


@extend_schema_view(
    list=extend_schema(
        summary="List sessions (your own; admins: everyone's), newest activity first",
        responses={200: SessionOutputSerializer(many=True), **error_responses(400, 401, 403, 404, 429)},
    ),
    retrieve=extend_schema(
        summary="Get a session", responses={200: SessionOutputSerializer, **error_responses(401, 403, 404, 429)}
    ),
)
class SessionViewSet(ReplicaListMixin, mixins.RetrieveModelMixin, ServiceViewSet):
    """Agent conversation sessions. A non-admin sees only their own; others' ids answer 404."""

    queryset = Session.objects.none()  # the schema's model; get_queryset() scopes real requests
    serializer_class = SessionOutputSerializer
    filterset_class = SessionFilter
    filter_backends = [FilterBackend, filters.SearchFilter, SessionOrdering]
    search_fields = ["title"]
    ordering = ["-last_activity_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Session]:
        return _owned_sessions(self.request)

    def get_object(self) -> Session:
        # The same scoping as get_queryset() (others' sessions are 404), through the lookup
        # compiled once per process: the ORM compiling it anew was a third of a detail GET.
        try:
            pk = uuid.UUID(str(self.kwargs["pk"]))
        except ValueError:
            raise Http404 from None
        owner_id = None if is_admin_request(self.request) else self.request.user.pk
        session = live_session(pk, owner_id=owner_id)
        if session is None:
            raise Http404
        self.check_object_permissions(self.request, session)
        return session

    def get_permissions(self) -> Sequence[Any]:
        if self.action == "transfer":
            return [IsPlatformAdmin()]
        return super().get_permissions()

    @extend_schema(
        summary="Create a session",
        request=SessionCreateSerializer,
        responses={201: SessionOutputSerializer, **error_responses(400, 401, 403, 409, 415, 422, 429)},
    )
    def create(self, request: Request) -> Response | HttpResponse:
        def create() -> Response:
            serializer = SessionCreateSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            session = services.session_create(
                actor=acting_user(request), owner=acting_user(request), **serializer.validated_data
            )
            return self.respond(SessionOutputSerializer(session).data)

        return idempotent(request, create)

    @extend_schema(
        summary="Change the title; merge keys into context and metadata",
        request=SessionUpdateSerializer,
        responses={200: SessionOutputSerializer, **error_responses(400, 401, 403, 404, 415, 429)},
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response | HttpResponse:
        def update() -> Response:
            session = self.get_object()
            serializer = SessionUpdateSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            session = services.session_update(actor=acting_user(request), session=session, **serializer.validated_data)
            return self.respond(SessionOutputSerializer(session).data)

        return idempotent(request, update)

    @extend_schema(
        summary="Soft-delete a session",
        responses={204: OpenApiResponse(description="Deleted"), **error_responses(401, 403, 404, 429)},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response | HttpResponse:
        def destroy() -> Response:
            services.session_soft_delete(actor=acting_user(request), session=self.get_object())
            return self.respond()

        return idempotent(request, destroy)

    def _lifecycle(self, request: Request, serializer_class: type, run: Any) -> Response | HttpResponse:
        def change() -> Response:
            session = self.get_object()
            serializer = serializer_class(data=request.data)
            serializer.is_valid(raise_exception=True)
            return self.respond(SessionOutputSerializer(run(session, serializer.validated_data)).data)

        return idempotent(request, change)

    @extend_schema(
        summary="Mark an active session completed",
        request=SessionCompleteSerializer,
        responses={200: SessionOutputSerializer, **error_responses(400, 401, 403, 404, 409, 415, 429)},
    )
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str | None = None) -> Response | HttpResponse:
        return self._lifecycle(
            request,
            SessionCompleteSerializer,
            lambda s, d: services.session_complete(actor=acting_user(request), session=s, reason=d["reason"] or None),
        )

    @extend_schema(
        summary="Mark an active session failed (the error is kept in metadata.error)",
        request=SessionFailSerializer,
        responses={200: SessionOutputSerializer, **error_responses(400, 401, 403, 404, 409, 415, 429)},
    )
    @action(detail=True, methods=["post"])
    def fail(self, request: Request, pk: str | None = None) -> Response | HttpResponse:
        return self._lifecycle(
            request,
            SessionFailSerializer,
            lambda s, d: services.session_fail(actor=acting_user(request), session=s, error=d["error"] or None),
        )

    @extend_schema(
        summary="Cancel an active session (the reason is kept in metadata.cancellation_reason)",
        request=SessionCancelSerializer,
        responses={200: SessionOutputSerializer, **error_responses(400, 401, 403, 404, 409, 415, 429)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response | HttpResponse:
        return self._lifecycle(
            request,
            SessionCancelSerializer,
            lambda s, d: services.session_cancel(actor=acting_user(request), session=s, reason=d["reason"] or None),
        )

    @extend_schema(
        summary="Move a session to another user (admin)",
        request=SessionTransferSerializer,
        responses={200: SessionOutputSerializer, **error_responses(400, 401, 403, 404, 415, 429)},
    )
    @action(detail=True, methods=["post"])
    def transfer(self, request: Request, pk: str | None = None) -> Response | HttpResponse:
        def transfer() -> Response:
            session = self.get_object()
            serializer = SessionTransferSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            new_owner = get_object_or_404(User.objects.all(), pk=serializer.validated_data["user"])
            session = services.session_transfer(actor=acting_user(request), session=session, new_owner=new_owner)
            return self.respond(SessionOutputSerializer(session).data)

        return idempotent(request, transfer)

    @extend_schema(
        summary="Session statistics for the caller (admins may pass user)",
        parameters=[OpenApiParameter("user", uuid.UUID, description="Another user's id (admins only)")],
        responses={200: SessionStatsSerializer, **error_responses(400, 401, 403, 404, 429)},
    )
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def stats(self, request: Request) -> Response:
        user = acting_user(request)
        requested = request.query_params.get("user")
        if requested:
            try:
                requested_id = uuid.UUID(requested)
            except ValueError:
                return Response({"user": ["Must be a valid UUID."]}, status=status.HTTP_400_BAD_REQUEST)
            if requested_id != user.pk:
                if not is_admin_request(request):
                    raise Http404
                user = get_object_or_404(User.all_objects.all(), pk=requested_id)
        stats = replica_read(request_principal(request), lambda: services.session_stats(user=user))
        return self.respond(SessionStatsSerializer(stats).data)


class MessagePagination(ValidatedCursorPagination):
    ordering = "sequence"
    page_size = 50
    max_page_size = 200
    revision = 0  # the session's, set by the view for the page's answer

    def get_paginated_response(self, data: Any) -> Response:
        response = super().get_paginated_response(data)
        response.data["revision"] = self.revision
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"]["revision"] = {"type": "integer", "description": "The session's revision."}
        return paginated


MAX_LAST = 1000
MESSAGE_RENDERERS = [RawJSONRenderer, BrowsableAPIRenderer]


def _owner_id(request: Request) -> uuid.UUID | None:
    return None if is_admin_request(request) else request.user.pk


class _SessionMessagesBase(ServiceAPIView):
    """Message routes: bodies parsed so that items survive (ItemJSONParser), answers rendered so
    that stored items go out verbatim (RawJSONRenderer)."""

    parser_classes = [ItemJSONParser]
    renderer_classes = MESSAGE_RENDERERS
    queryset = Message.objects.none()

    def _validated(self, serializer_class: type, request: Request) -> dict[str, Any]:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


@extend_schema_view(
    get=extend_schema(
        summary="Page through a session's messages in sequence order (cursor pagination), or the latest N",
        parameters=[
            OpenApiParameter(
                "last",
                int,
                description=f"The latest N messages (1-{MAX_LAST}), oldest first; previous links to older ones.",
            )
        ],
        responses={200: MessageOutputSerializer(many=True), **error_responses(400, 401, 403, 404, 429)},
    ),
    post=extend_schema(
        summary="Append a message to an active session",
        request=MessageAppendSerializer,
        responses={201: MessageOutputSerializer, **error_responses(400, 401, 403, 404, 409, 415, 422, 429)},
    ),
)
class SessionMessagesView(_SessionMessagesBase):
    """A session's messages. Listing costs one query (ownership and the session's revision are
    part of it) whatever the depth; appending costs one statement (allocate the sequences with
    UPDATE ... RETURNING, insert), and one more with an Idempotency-Key."""

    serializer_class = MessageOutputSerializer
    pagination_class = MessagePagination

    def get(self, request: Request, session_pk: uuid.UUID) -> Response:
        # Message pages tolerate replication lag (the writer itself is sticky to the primary).
        return replica_read(request_principal(request), lambda: self._page(request, session_pk))

    def _page(self, request: Request, session_pk: uuid.UUID) -> Response:
        # The session's messages, scoped like _owned_sessions(), through SQL compiled once.
        owner_id = _owner_id(request)
        messages = MessagePage(session_id=session_pk, owner_id=owner_id)
        if request.query_params.get("last") is not None:
            return self._latest(request, messages)
        # MessagePage answers what the cursor pagination asks of a queryset (agent_sessions.queries).
        page: list[Any] | None = self.paginate_queryset(messages)  # type: ignore[arg-type]
        assert isinstance(self.paginator, MessagePagination)
        self.paginator.revision = self._revision(page, session_pk, owner_id)
        return self.get_paginated_response(MessageOutputSerializer(page, many=True).data)

    def _revision(self, page: list[Any] | None, session_pk: uuid.UUID, owner_id: uuid.UUID | None) -> int:
        if page:
            return int(page[0].session_revision)
        # Asked of the database the page came from (a replica inside replica_read), so an empty
        # page and its revision come from one snapshot: a lagging replica never pairs a page
        # missing the newest messages with the primary's newer revision.
        sessions = Session.objects.filter(pk=session_pk)
        if owner_id is not None:
            sessions = sessions.filter(user_id=owner_id)
        revision = sessions.values_list("revision", flat=True).first()
        if revision is None:
            raise Http404
        return int(revision)

    def _latest(self, request: Request, messages: MessagePage) -> Response:
        """?last=N: one statement (the newest N, descending), answered oldest first, with a
        cursor link to the page before them."""
        if request.query_params.get("cursor") is not None:
            raise ValidationError({"last": ["Cannot be combined with cursor."]})
        try:
            last = int(request.query_params["last"])
        except ValueError:
            last = 0
        if not 1 <= last <= MAX_LAST:
            raise ValidationError({"last": [f"Must be an integer from 1 to {MAX_LAST}."]})
        rows = messages.order_by("-sequence")[0:last]
        rows.reverse()
        revision = self._revision(rows, messages.session_id, messages.owner_id)
        previous = None
        if rows and rows[0].sequence > 1:
            paginator = MessagePagination()
            url = remove_query_param(request.build_absolute_uri(), "last")
            paginator.base_url = replace_query_param(url, "page_size", min(last, paginator.max_page_size))
            previous = paginator.encode_cursor(Cursor(offset=0, reverse=True, position=rows[0].sequence))
        return Response(
            {
                "next": None,
                "previous": previous,
                "results": MessageOutputSerializer(rows, many=True).data,
                "revision": revision,
            }
        )

    def post(self, request: Request, session_pk: uuid.UUID) -> Response | HttpResponse:
        def append(claim: KeyClaim | None) -> Response:
            data = self._validated(MessageAppendSerializer, request)
            expected_revision = data.pop("expected_revision")
            state_delta = data.pop("state_delta")
            try:
                appended = services.session_append_messages(
                    session_id=session_pk,
                    owner_id=_owner_id(request),
                    messages=[data],
                    expected_revision=expected_revision,
                    state_delta=state_delta,
                    claim=claim,
                )
            except Session.DoesNotExist:
                raise Http404 from None
            return self.respond({**MessageOutputSerializer(appended.messages[0]).data, "revision": appended.revision})

        return idempotent_append(request, append)


class MessageBatchOutputSerializer(serializers.Serializer):
    messages = MessageOutputSerializer(many=True)
    revision = serializers.IntegerField()


class MessagesRemovedSerializer(serializers.Serializer):
    messages = MessageOutputSerializer(many=True)
    revision = serializers.IntegerField()


class MessagesClearedSerializer(serializers.Serializer):
    removed = serializers.IntegerField()
    revision = serializers.IntegerField()


class SessionMessageBatchView(_SessionMessagesBase):
    serializer_class = MessageBatchSerializer

    @extend_schema(
        summary="Append 1-100 messages to an active session, all with consecutive sequences or none",
        request=MessageBatchSerializer,
        responses={201: MessageBatchOutputSerializer, **error_responses(400, 401, 403, 404, 409, 415, 422, 429)},
    )
    def post(self, request: Request, session_pk: uuid.UUID) -> Response | HttpResponse:
        def append(claim: KeyClaim | None) -> Response:
            data = self._validated(MessageBatchSerializer, request)
            try:
                appended = services.session_append_messages(
                    session_id=session_pk,
                    owner_id=_owner_id(request),
                    messages=[dict(message) for message in data["messages"]],
                    expected_revision=data["expected_revision"],
                    state_delta=data["state_delta"],
                    claim=claim,
                )
            except Session.DoesNotExist:
                raise Http404 from None
            return self.respond(
                {"messages": MessageOutputSerializer(appended.messages, many=True).data, "revision": appended.revision}
            )

        return idempotent_append(request, append)


class SessionMessagePopView(_SessionMessagesBase):
    serializer_class = MessagePopSerializer
    success_status = 200

    @extend_schema(
        summary="Remove the newest messages of an active session (returned oldest first)",
        request=MessagePopSerializer,
        responses={200: MessagesRemovedSerializer, **error_responses(400, 401, 403, 404, 409, 415, 422, 429)},
    )
    def post(self, request: Request, session_pk: uuid.UUID) -> Response | HttpResponse:
        def pop() -> Response:
            data = self._validated(MessagePopSerializer, request)
            try:
                removed = services.session_pop_messages(
                    actor=acting_user(request),
                    session_id=session_pk,
                    owner_id=_owner_id(request),
                    count=data["count"],
                    expected_revision=data["expected_revision"],
                )
            except Session.DoesNotExist:
                raise Http404 from None
            return self.respond(
                {"messages": MessageOutputSerializer(removed.messages, many=True).data, "revision": removed.revision}
            )

        return idempotent(request, pop)


class SessionMessageClearView(_SessionMessagesBase):
    serializer_class = MessageClearSerializer
    success_status = 200

    @extend_schema(
        summary="Remove every message of an active session",
        request=MessageClearSerializer,
        responses={200: MessagesClearedSerializer, **error_responses(400, 401, 403, 404, 409, 415, 422, 429)},
    )
    def post(self, request: Request, session_pk: uuid.UUID) -> Response | HttpResponse:
        def clear() -> Response:
            data = self._validated(MessageClearSerializer, request)
            try:
                removed = services.session_clear_messages(
                    actor=acting_user(request),
                    session_id=session_pk,
                    owner_id=_owner_id(request),
                    expected_revision=data["expected_revision"],
                )
            except Session.DoesNotExist:
                raise Http404 from None
            return self.respond({"removed": len(removed.messages), "revision": removed.revision})

        return idempotent(request, clear)
