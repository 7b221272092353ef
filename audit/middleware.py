"""Binds the request context (request id, client address, user agent) and logs each request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.context import bound, from_request

logger = logging.getLogger("request")


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        context = from_request(request)
        request.request_id = context.request_id
        with bound(context):
            response = self.get_response(request)
            duration_ms = (time.perf_counter() - started) * 1000
            response["X-Request-ID"] = str(context.request_id)
            user = getattr(request, "user", None)
            user_id = getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None
            # Path only: query strings and bodies can carry content we must not log.
            logger.info(
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
