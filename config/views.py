"""JSON answers for the errors Django itself handles (unknown URLs, crashes)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"detail": "Permission denied.", "code": "permission_denied"}, status=403)


def server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)


def hello(request: HttpRequest) -> HttpResponse:
    """The benchmark floor: the whole middleware stack, no database, no DRF."""
    return HttpResponse(b"hello", content_type="text/plain")
