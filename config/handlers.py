"""The WSGI handler: two middleware chains, chosen per request.

Staff pages (and any request with a session cookie) go through ``settings.MIDDLEWARE``, the
whole stack. API and probe requests without one (``config.middleware.serves_staff`` is false)
go through the same chain without ``settings.STAFF_ONLY_MIDDLEWARE``, what serves only staff
pages (static files, sessions, CSRF, the session user, messages). The wrappers in ``MIDDLEWARE``
already step aside for such requests, but each middleware in the chain still costs its call
frames: ``bench/README.md`` has what the shorter chain buys.

CSRF is safe to leave out there: without a session cookie there is no ambient credential to
forge a request with, every view under ``/api/`` is a DRF view (exempt from the middleware; DRF's
session authentication runs the CSRF check itself) and the probes only read.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponseBase

from config.middleware import serves_staff


class _Chain(BaseHandler):
    """A handler whose middleware chain is built from ``middleware`` instead of MIDDLEWARE."""

    def __init__(self, middleware: list[str]) -> None:
        staff = settings.MIDDLEWARE
        # load_middleware reads settings.MIDDLEWARE; swapped only while this chain is built, at
        # start-up, before any request.
        settings.MIDDLEWARE = middleware
        try:
            self.load_middleware()
        finally:
            settings.MIDDLEWARE = staff


class LaneWSGIHandler(WSGIHandler):
    def __init__(self) -> None:
        super().__init__()
        # From MIDDLEWARE as it is now: tracing (config.observability.tracing) adds its own.
        self.lean = _Chain([name for name in settings.MIDDLEWARE if name not in settings.STAFF_ONLY_MIDDLEWARE])

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        if serves_staff(request):
            return super().get_response(request)
        return self.lean.get_response(request)
