"""The project's middleware: the request context and request log, hostile input refused up
front, and database outages answered as JSON 503 outside DRF views."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.context import bound, from_request
from config.db.text import is_storable
from config.errors import DATABASE_UNAVAILABLE_BODY, DATABASE_UNAVAILABLE_HEADERS, DATABASE_UNAVAILABLE_STATUS

logger = logging.getLogger(__name__)
request_logger = logging.getLogger("request")


class RequestContextMiddleware:
    """Binds the request context (request id, client address, user agent) and logs each request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        context = from_request(request)
        request.request_id = context.request_id  # type: ignore[attr-defined]
        with bound(context):
            response = self.get_response(request)
            duration_ms = (time.perf_counter() - started) * 1000
            response["X-Request-ID"] = str(context.request_id)
            user = getattr(request, "user", None)
            user_id = getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None
            # Path only: query strings and bodies can carry content we must not log.
            request_logger.info(
                "%s %s %s %.1fms",
                context.method,
                context.path,
                response.status_code,
                duration_ms,
                extra={
                    "method": context.method,
                    "path": context.path,
                    "status": response.status_code,
                    "duration_ms": round(duration_ms, 2),
                    "user_id": str(user_id) if user_id else None,
                    "client_ip": context.ip_address,
                },
            )
        return response


def _is_utf8(query: str) -> bool:
    if query.isascii() and "%" not in query:
        return True
    try:
        # WSGI hands the raw bytes over decoded as latin-1.
        unquote_to_bytes(query.encode("latin-1")).decode("utf-8")
    except UnicodeError:
        return False
    return True


class HostileInputMiddleware:
    """A NUL byte or an unpaired surrogate in the path or query string, or a query string that is
    not UTF-8, is a 400, up front.

    PostgreSQL cannot store or compare such strings; refusing them here means no filter,
    search box or lookup further down has to remember to.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if query and not _is_utf8(query):
            # Django would decode it with replacement characters and filter on those.
            return JsonResponse({"detail": "The query string is not valid UTF-8.", "code": "invalid_query"}, status=400)
        if not is_storable(request.path):
            return JsonResponse(
                {"detail": "The path contains a NUL byte or an invalid character.", "code": "invalid_path"}, status=400
            )
        for key, values in request.GET.lists():
            if not is_storable(key) or not all(is_storable(v) for v in values):
                return JsonResponse(
                    {key if is_storable(key) else "query": ["Contains a NUL byte or an invalid character."]},
                    status=400,
                )
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Outside DRF views (admin, health), a lost or exhausted database is a JSON 503."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.warning("database unavailable: %s", type(exception).__name__)
            return JsonResponse(
                DATABASE_UNAVAILABLE_BODY, status=DATABASE_UNAVAILABLE_STATUS, headers=DATABASE_UNAVAILABLE_HEADERS
            )
        return None
