"""The project's middleware.

* ``EdgeMiddleware``, outermost: the request context and the request log, database outages
  answered as JSON 503 outside DRF views; ``HostileInputMiddleware``: hostile input refused up
  front.
* The admin's machinery (sessions, ``request.user`` from the session, messages) is Django's own,
  wrapped to step aside on requests that cannot need it: API and probe paths that carry no
  session cookie. (CSRF protection stays Django's, unwrapped, for every request.) An API key or a token authenticates on its own; staff using the
  browsable API carry the cookie and get the whole stack. ``bench/README.md`` has what that
  saves per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.exceptions import MiddlewareNotUsed
from django.core.handlers.exception import response_for_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.functional import empty

from config.context import RequestContext, bind, from_request, unbind
from config.db.replicas import configured_replicas, mark_sticky, user_principal
from config.db.text import is_storable
from config.errors import DATABASE_UNAVAILABLE_BODY, DATABASE_UNAVAILABLE_HEADERS, DATABASE_UNAVAILABLE_STATUS
from config.logging import RequestLog
from config.observability import metrics
from config.observability.middleware import record_request

logger = logging.getLogger(__name__)
request_log = RequestLog("request")


# Paths served to API clients and probes only; anything else may be a staff page.
LEAN_PREFIXES = ("/api/", "/health", "/_bench/")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


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
    not UTF-8, is a 400, up front (after SecurityMiddleware, so the 400 carries its headers).

    PostgreSQL cannot store or compare such strings; refusing them here means no filter, search
    box or lookup further down has to remember to.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return hostile_input(request) or self.get_response(request)


def hostile_input(request: HttpRequest) -> JsonResponse | None:
    query = request.META.get("QUERY_STRING", "")
    if query and not _is_utf8(query):
        # Django would decode it with replacement characters and filter on those.
        return JsonResponse({"detail": "The query string is not valid UTF-8.", "code": "invalid_query"}, status=400)
    if not is_storable(request.path):
        return JsonResponse(
            {"detail": "The path contains a NUL byte or an invalid character.", "code": "invalid_path"}, status=400
        )
    if query:
        for key, values in request.GET.lists():
            if not is_storable(key) or not all(is_storable(v) for v in values):
                return JsonResponse(
                    {key if is_storable(key) else "query": ["Contains a NUL byte or an invalid character."]},
                    status=400,
                )
    return None


def _user_id(request: HttpRequest) -> str | None:
    """The authenticated user's id, without resolving a lazy ``request.user`` nobody asked for
    (on a probe or an anonymous page that would load a session just to log "anonymous")."""
    user = request.__dict__.get("user")
    if user is None:
        return None
    wrapped = getattr(user, "_wrapped", user)
    if wrapped is empty or not getattr(wrapped, "is_authenticated", False):
        return None
    return str(wrapped.pk)


def log_request(context: RequestContext, request: HttpRequest, response: HttpResponseBase, duration_ms: float) -> None:
    """The request log's line for one answered request. Path only: query strings and bodies can
    carry content we must not log."""
    request_log.info(
        "%s %s %s %.1fms",
        (context.method, context.path, response.status_code, duration_ms),
        {
            "method": context.method,
            "path": context.path,
            "status": response.status_code,
            "duration_ms": round(duration_ms, 2),
            "user_id": _user_id(request),
            "client_ip": context.ip_address,
        },
        context.request_id_text,
    )


def served(request: HttpRequest, answer: Callable[[HttpRequest], HttpResponseBase]) -> tuple[HttpResponseBase, float]:
    """``answer(request)`` inside the request's context (request id, client address, user
    agent), its X-Request-ID header set and its log line written; the answer and the seconds it
    took."""
    started = time.perf_counter()
    context = from_request(request)
    request.request_id = context.request_id  # type: ignore[attr-defined]
    token = bind(context)
    try:
        response = answer(request)
        seconds = time.perf_counter() - started
        response.headers._store["x-request-id"] = ("X-Request-ID", context.request_id_text)
        log_request(context, request, response, seconds * 1000)
    finally:
        unbind(token)
    return response, seconds


def database_unavailable(exception: Exception) -> JsonResponse | None:
    """A lost or exhausted database outside DRF views (admin, health): the JSON 503 every other
    layer answers it with."""
    if isinstance(exception, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", type(exception).__name__)
        return JsonResponse(
            DATABASE_UNAVAILABLE_BODY, status=DATABASE_UNAVAILABLE_STATUS, headers=DATABASE_UNAVAILABLE_HEADERS
        )
    return None


class EdgeMiddleware:
    """Outermost: binds the request context (request id, client address, user agent), logs each
    request, and answers a lost or exhausted database outside DRF views (admin, health) with the
    JSON 503 every other layer answers it with."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return served(request, self.get_response)[0]

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return database_unavailable(exception)


# --- API and probe requests: the edge's work in one layer --------------------------------------


class _HeaderProbe:
    """What SecurityMiddleware asks of a request when it writes its response headers."""

    def __init__(self, secure: bool) -> None:
        self.secure = secure

    def is_secure(self) -> bool:
        return self.secure


Header = tuple[str, tuple[str, str]]  # as ResponseHeaders stores one: (lower-case name, (name, value))


def _added_headers(write: Callable[[HttpResponse], object]) -> tuple[Header, ...]:
    """The headers ``write`` adds to a plain response, as ResponseHeaders stores them."""
    response = HttpResponse()
    before = dict(response.headers._store)
    write(response)
    return tuple((lower, pair) for lower, pair in response.headers._store.items() if lower not in before)


class ApiEdgeMiddleware:
    """API and probe requests without a session cookie (config.handlers): what MetricsMiddleware,
    EdgeMiddleware, SecurityMiddleware, HostileInputMiddleware, CommonMiddleware and
    XFrameOptionsMiddleware do in the whole stack, in their order, as one layer.

    Each rule is theirs, not a copy: the request metrics, the context, the log line, the 503 and
    the hostile-input check are the same functions; host validation, the HTTPS redirect and
    APPEND_SLASH are Django's own methods; the security and frame headers are the ones Django's
    SecurityMiddleware and XFrameOptionsMiddleware write, asked of them once at start-up (for a
    plain and for a secure request: they depend on nothing else) and set as they set them (only
    where the response has none). What goes is six layers of hooks, wrappers and per-request
    header encoding: bench/README.md has the measurement. tests/config/test_handlers.py holds
    this layer's answers (status, headers, body, log line, metrics) to the whole stack's.

    ``/metrics`` is not an API or probe path, so it never reaches this layer.
    """

    REPLACES = (
        "config.observability.middleware.MetricsMiddleware",
        "config.middleware.EdgeMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "config.middleware.HostileInputMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    )

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.metrics = settings.METRICS_ENABLED
        self.security = SecurityMiddleware(get_response)
        self.common = CommonMiddleware(get_response)
        frames = XFrameOptionsMiddleware(get_response)
        security = self.security

        def secured(secure: bool) -> Callable[[HttpResponse], object]:
            return lambda response: security.process_response(_HeaderProbe(secure), response)  # type: ignore[arg-type]

        self.security_headers = {secure: _added_headers(secured(secure)) for secure in (False, True)}
        self.hsts = self.security_headers[False] != self.security_headers[True]
        framed = _added_headers(lambda response: frames.process_response(None, response))  # type: ignore[arg-type]
        self.frame_header: Header | None = framed[0] if framed else None
        self._hosts_for: tuple[tuple[str, ...], bool] | None = None  # (ALLOWED_HOSTS, DEBUG) they passed under
        self._hosts: set[str] = set()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if self.metrics and not metrics.sampling:
            metrics.start_sampler()
        response, seconds = served(request, self._secured)
        if self.metrics:
            record_request(request, response, seconds)
        return response

    def _secured(self, request: HttpRequest) -> HttpResponseBase:
        """SecurityMiddleware's place: its redirect, then its headers on whatever answers."""
        response: HttpResponseBase | None = None
        if self.security.redirect:
            try:
                response = self.security.process_request(request)
            except Exception as exc:  # Django's wrapper answers it, without the security headers
                return response_for_exception(request, exc)
        if response is None:
            try:
                response = hostile_input(request) or self._common(request)
            except Exception as exc:  # what the wrapper around HostileInputMiddleware answers
                response = response_for_exception(request, exc)
        store = response.headers._store
        for lower, pair in self.security_headers[self.hsts and request.is_secure()]:
            if lower not in store:
                store[lower] = pair
        return response

    def _common(self, request: HttpRequest) -> HttpResponseBase:
        """CommonMiddleware's place (host validation, APPEND_SLASH, Content-Length), with
        XFrameOptionsMiddleware's header inside it."""
        try:
            redirect = self._checked(request)  # DisallowedHost: a 400, as in the stack
        except Exception as exc:
            return response_for_exception(request, exc)
        if redirect is not None:  # PREPEND_WWW
            return self.common.process_response(request, redirect)
        response = self.get_response(request)
        store = response.headers._store
        frame = self.frame_header
        if (
            frame is not None
            and "x-frame-options" not in store
            and not getattr(response, "xframe_options_exempt", False)
        ):
            store[frame[0]] = frame[1]
        if response.status_code == 404 or "content-length" in store or response.streaming:
            return self.common.process_response(request, response)
        store["content-length"] = ("Content-Length", str(len(response.content)))
        return response

    def _checked(self, request: HttpRequest) -> HttpResponseBase | None:
        """CommonMiddleware.process_request, its host check remembered: a Host header that passed
        ALLOWED_HOSTS passes again (clients send the same few), until ALLOWED_HOSTS or DEBUG
        change. With DISALLOWED_USER_AGENTS or PREPEND_WWW set, Django's method runs whole."""
        if settings.DISALLOWED_USER_AGENTS or settings.PREPEND_WWW:
            return self.common.process_request(request)
        raw = request._get_raw_host()  # type: ignore[attr-defined]  # Django's: the Host it validates
        allowed = (tuple(settings.ALLOWED_HOSTS), settings.DEBUG)  # a copy: a list changed in place counts
        if self._hosts_for != allowed:
            self._hosts_for, self._hosts = allowed, set()
        if raw not in self._hosts:
            request.get_host()
            if len(self._hosts) >= 64:  # the header is the client's: a full set starts over
                self._hosts.clear()
            self._hosts.add(raw)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return database_unavailable(exception)


# --- the admin's machinery, out of the way of API clients -------------------------------------


def serves_staff(request: HttpRequest) -> bool:
    """Whether a request may need a session, ``request.user`` from it, or messages: every page
    outside the API and the probes, and any request with a session cookie (staff in the
    browsable API)."""
    return not request.path_info.startswith(LEAN_PREFIXES) or settings.SESSION_COOKIE_NAME in request.COOKIES


class StaffSessionMiddleware(SessionMiddleware):
    def __call__(self, request: HttpRequest) -> HttpResponse:
        return super().__call__(request) if serves_staff(request) else self.get_response(request)  # type: ignore[return-value]


class StaffAuthenticationMiddleware(AuthenticationMiddleware):
    def __call__(self, request: HttpRequest) -> HttpResponse:
        return super().__call__(request) if serves_staff(request) else self.get_response(request)  # type: ignore[return-value]


class StaffMessageMiddleware(MessageMiddleware):
    def __call__(self, request: HttpRequest) -> HttpResponse:
        return super().__call__(request) if serves_staff(request) else self.get_response(request)  # type: ignore[return-value]


# --- read replicas ----------------------------------------------------------------------------


class ReplicaStickyMiddleware:
    """After a mutating request that succeeded, its user's reads stay on the primary for
    REPLICA_STICKY_SECONDS (the marker lives in the shared cache: every app host sees it), so a
    client reads its own writes whatever host and replica it lands on. Without replicas it is not
    in the stack at all."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not configured_replicas():
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method not in SAFE_METHODS and response.status_code < 400:
            user_id = _user_id(request)
            if user_id is not None:
                mark_sticky(user_principal(user_id))
        return response
