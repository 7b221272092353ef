"""DRF plumbing shared by every endpoint: the JSON parser, error mapping, session auth for staff.

The contract: bad input gets a 4xx with a JSON body naming the problem, never a 500, and a
database that is down or overloaded answers a JSON 503.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import InvalidInput, StateConflict

logger = logging.getLogger(__name__)

MAX_JSON_DEPTH = 32


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource is in a state that does not allow this."
    default_code = "conflict"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable or overloaded; retry shortly."
    default_code = "database_unavailable"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_json_value(value: Any, depth: int = 0) -> None:
    """Refuse what PostgreSQL's jsonb refuses (NUL, unpaired surrogates) and absurd nesting."""
    if depth > MAX_JSON_DEPTH:
        raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key)
            check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, depth + 1)


def check_text(value: str) -> None:
    if "\x00" in value:
        raise exceptions.ParseError("JSON strings must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise exceptions.ParseError("JSON strings must not contain unpaired surrogates") from None


class StrictJSONParser(BaseParser):
    """JSON bodies only, bounded in size, valid UTF-8, no NaN/Infinity, no NUL, bounded depth."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        try:
            if declared and int(declared) > limit:
                raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        except ValueError:
            raise exceptions.ParseError("Invalid Content-Length header.") from None
        if stream is None:
            return {}
        try:
            raw = stream.read(limit + 1)
        except RequestDataTooBig:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.") from None
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.ParseError("Request body is not valid UTF-8.") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise exceptions.ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error: {exc}") from None
        check_json_value(data)
        return data


def _error(detail: Any, code: str, http_status: int, headers: dict[str, str] | None = None) -> Response:
    body = detail if isinstance(detail, dict) else {"detail": detail, "code": code}
    return Response(body, status=http_status, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the domain errors and database failures mapped to 4xx/503."""
    if isinstance(exc, StateConflict):
        return _error(exc.message, exc.code, status.HTTP_409_CONFLICT)
    if isinstance(exc, InvalidInput):
        if exc.field:
            return _error({exc.field: [exc.message]}, exc.code, status.HTTP_400_BAD_REQUEST)
        return _error(exc.message, exc.code, status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return _error(detail, "invalid", status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if isinstance(exc, IntegrityError):
        logger.info("integrity error answered 409: %s", type(exc).__name__)
        return _error("The request conflicts with existing data.", "conflict", status.HTTP_409_CONFLICT)
    if isinstance(exc, DataError):
        return _error("The request holds a value the database cannot store.", "invalid", status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", exc.__class__.__name__, exc_info=False)
        return database_unavailable_response()
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        detail = response.data["detail"]
        response.data["code"] = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
    return response


def database_unavailable_response() -> Response:
    exc = ServiceUnavailable()
    return Response(
        {"detail": str(exc.detail), "code": exc.default_code},
        status=exc.status_code,
        headers={"Retry-After": "1"},
    )


class ListFiltersOnlyMixin:
    """Query-string filters, search and ordering apply to the list action only.

    DRF's ``get_object()`` runs every filter backend on detail routes too, so each GET, PATCH,
    DELETE or action on one object built a django-filter FilterSet and its form for nothing:
    a detail URL names its object, and access is scoped in ``get_queryset()``, not by filters.
    """

    def filter_queryset(self, queryset: Any) -> Any:
        if getattr(self, "action", None) != "list":
            return queryset
        return super().filter_queryset(queryset)


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, skipped when the query string names none of the view's filters.

    With no filter parameters a FilterSet filters nothing, but building it and validating its
    form cost a tenth of a list request (bench/profile.py); with any of them present it runs
    exactly as before, so bad values are still a 400 naming the parameter.
    """

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None and not any(
            name in request.query_params for name in filterset_class.base_filters
        ):
            return queryset
        return super().filter_queryset(request, queryset, view)
