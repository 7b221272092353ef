"""JSON answers for the errors Django itself handles (unknown URLs, crashes); the API docs pages."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView


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


# --- the API docs, offline -------------------------------------------------------------------

# Swagger UI and Redoc come from our static files (drf-spectacular-sidecar, pinned); this policy
# keeps every page resource on our own origin too (Redoc's footer fetches a logo from its
# vendor's CDN, Swagger UI a validator badge), so the pages work without internet and run no
# third-party code next to the staff session cookie. Inline scripts and styles: the two
# templates' own bootstrap code. Workers from blob: Redoc's search index.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ]
)


class _SameOriginOnly:
    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response


class SwaggerDocsView(_SameOriginOnly, SpectacularSwaggerView):
    """/api/docs/: Swagger UI from our static files."""


class RedocDocsView(_SameOriginOnly, SpectacularRedocView):
    """/api/redoc/: Redoc from our static files, without the web fonts its template loads."""

    template_name = "drf_spectacular/redoc_offline.html"
