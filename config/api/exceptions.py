"""How the API answers errors: DRF's handler, plus the domain errors and database failures
mapped to 4xx and 503, so bad input is never a 500 and a database that is down or overloaded
answers a JSON 503.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import (
    DATABASE_UNAVAILABLE_BODY,
    DATABASE_UNAVAILABLE_HEADERS,
    DATABASE_UNAVAILABLE_STATUS,
    InvalidInput,
    StateConflict,
)

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "payload_too_large"


def _error(detail: Any, code: str, http_status: int, headers: dict[str, str] | None = None) -> Response:
    body = detail if isinstance(detail, dict) else {"detail": detail, "code": code}
    return Response(body, status=http_status, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the domain errors and database failures mapped to 4xx/503."""
    if isinstance(exc, StateConflict):
        if exc.details:
            return _error({"detail": exc.message, "code": exc.code, **exc.details}, exc.code, status.HTTP_409_CONFLICT)
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
    return Response(
        dict(DATABASE_UNAVAILABLE_BODY), status=DATABASE_UNAVAILABLE_STATUS, headers=DATABASE_UNAVAILABLE_HEADERS
    )
