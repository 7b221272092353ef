"""Middleware that keeps hostile input and database outages from turning into 500s."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)


def _has_bad_chars(value: str) -> bool:
    return "\x00" in value or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)


class HostileInputMiddleware:
    """A NUL byte or an unpaired surrogate in the path or query string is a 400, up front.

    PostgreSQL cannot store or compare such strings; refusing them here means no filter,
    search box or lookup further down has to remember to.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
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
