"""The WSGI handler: two middleware chains, chosen per request.

Staff pages (and any request with a session cookie) go through ``settings.MIDDLEWARE``, the
whole stack. API and probe requests without one (``config.middleware.serves_staff`` is false)
go through the same chain without ``settings.STAFF_ONLY_MIDDLEWARE``, what serves only staff
pages (static files, sessions, CSRF, the session user, messages). The wrappers in ``MIDDLEWARE``
already step aside for such requests, but each middleware in the chain still costs its call
frames: ``bench/README.md`` has what the shorter chain buys.

Either way, once the server closes the response, the cycles between DRF's view, request and
response are broken (``_release``), so the request is freed without the garbage collector.

CSRF is safe to leave out there: without a session cookie there is no ambient credential to
forge a request with, every view under ``/api/`` is a DRF view (exempt from the middleware; DRF's
session authentication runs the CSRF check itself) and the probes only read.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.cache import close_caches
from django.core.cache.backends.base import BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import reset_queries
from django.http import HttpRequest, HttpResponseBase
from django.utils.module_loading import import_string

from config.db.pool import serving_one_request_at_a_time
from config.middleware import ApiEdgeMiddleware, serves_staff


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


def lean_middleware(middleware: list[str]) -> list[str]:
    """``middleware`` without what serves only staff pages, with ApiEdgeMiddleware in the place
    of the six it does the work of (they sit together once the staff-only ones are out)."""
    lean = [name for name in middleware if name not in settings.STAFF_ONLY_MIDDLEWARE]
    edge = [i for i, name in enumerate(lean) if name in ApiEdgeMiddleware.REPLACES]
    if not edge:
        return lean
    if edge != list(range(edge[0], edge[0] + len(edge))):
        raise ImproperlyConfigured(
            f"MIDDLEWARE: {', '.join(ApiEdgeMiddleware.REPLACES)} must follow one another once "
            "STAFF_ONLY_MIDDLEWARE is left out (config.middleware.ApiEdgeMiddleware stands for them)"
        )
    return [*lean[: edge[0]], "config.middleware.ApiEdgeMiddleware", *lean[edge[-1] + 1 :]]


class LaneWSGIHandler(WSGIHandler):
    def __init__(self) -> None:
        super().__init__()
        # From MIDDLEWARE as it is now: tracing (config.observability.tracing) adds its own.
        self.lean = _Chain(lean_middleware(settings.MIDDLEWARE))

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        # A sync worker's pool connection may stay checked out between its requests
        # (config.db.pool.holds_checkout); a threaded server's may not.
        serving_one_request_at_a_time(not environ.get("wsgi.multithread", True))
        return super().__call__(environ, start_response)

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        response = super().get_response(request) if serves_staff(request) else self.lean.get_response(request)
        # Django clears its closers after running them, so this reference is dropped at close too.
        response._resource_closers.append(functools.partial(_release, response))  # type: ignore[attr-defined]
        return response


def _release(response: HttpResponseBase) -> None:
    """Run when the server closes the response: break the reference cycles a DRF view leaves
    (the view holds its request and response, the request's parser context holds the view and
    the request itself, the response's renderer context holds the view and the request), so
    the request's objects (the rows it loaded among them) are freed now by reference counting.
    Left alone, every API request's object graph waited for the garbage collector, which then
    ran several times a page and scanned each of those objects first (bench/README.md)."""
    context = getattr(response, "renderer_context", None)
    if not context:
        return
    view, drf_request = context.get("view"), context.get("request")
    context.clear()
    if drf_request is not None:
        vars(drf_request).clear()
    if view is not None:
        vars(view).clear()


def idle_request_receivers() -> list[tuple[object, object]]:
    """Django's per-request receivers that have nothing to do in this configuration, as
    (signal, receiver) pairs.

    * ``reset_queries`` on request start clears each connection's query log, which is only
      written with DEBUG on or a forced debug cursor (DB_ECHO_SQL; ``CaptureQueriesContext``
      reconnects the receiver for the time it captures).
    * ``close_caches`` on request end calls ``close()`` on each cache in use, and neither of our
      backends (Redis, the database table) has one beyond ``BaseCache``'s, which does nothing.

    Both walk a thread-local registry on every request: dropping them took the project hello
    from 768 k to 709 k instructions (``bench/README.md``).
    """
    idle: list[tuple[object, object]] = []
    if not settings.DEBUG and not settings.DB_POOL.echo_sql:
        idle.append((request_started, reset_queries))
    backends = [import_string(options["BACKEND"]) for options in settings.CACHES.values()]
    if all(backend.close is BaseCache.close for backend in backends):
        idle.append((request_finished, close_caches))
    return idle


def drop_idle_request_receivers() -> None:
    for signal, receiver in idle_request_receivers():
        signal.disconnect(receiver)  # type: ignore[attr-defined]
