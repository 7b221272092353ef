"""Middleware that keeps hostile input and database outages from turning into 500s."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


def _has_bad_chars(value: str) -> bool:
    return "\x00" in value or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)


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
        if _has_bad_chars(request.path):
            return JsonResponse(
                {"detail": "The path contains a NUL byte or an invalid character.", "code": "invalid_path"}, status=400
            )
        for key, values in request.GET.lists():
            if _has_bad_chars(key) or any(_has_bad_chars(v) for v in values):
                return JsonResponse(
                    {key if not _has_bad_chars(key) else "query": ["Contains a NUL byte or an invalid character."]},
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
            response = JsonResponse(
                {"detail": "The database is unavailable or overloaded; retry shortly.", "code": "database_unavailable"},
                status=503,
            )
            response["Retry-After"] = "1"
            return response
        return None
