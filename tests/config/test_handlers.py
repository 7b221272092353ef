"""The production WSGI handler (config.handlers): API and probe requests without a session cookie
take the shorter middleware chain, and answer exactly what the whole stack answers."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.conf import settings
from django.core.cache import close_caches
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, reset_queries
from django.dispatch.dispatcher import _make_id

from config.db.pool import serving_one_request_at_a_time
from config.handlers import LaneWSGIHandler, idle_request_receivers, lean_middleware
from config.middleware import ApiEdgeMiddleware


def call(
    application: Any, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    path, _, query = path.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "HTTP_HOST": "testserver"}
    environ |= {"REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body), **(headers or {})}
    setup_testing_defaults(environ)  # the rest of a WSGI environ
    if body:
        environ["CONTENT_TYPE"] = "application/json"
        environ["CONTENT_LENGTH"] = str(len(body))
    answer: list[Any] = []
    result = application(
        environ, lambda status, response_headers, exc_info=None: answer.extend([status, response_headers])
    )
    try:
        content = b"".join(result)
    finally:
        result.close()
    return int(answer[0][:3]), dict(answer[1]), content


@pytest.fixture
def handlers() -> Iterator[tuple[LaneWSGIHandler, WSGIHandler]]:
    # As Django's test client does: the connection (inside the test's transaction) stays open
    # across the requests instead of being closed at their start and end.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield LaneWSGIHandler(), WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        serving_one_request_at_a_time(False)  # the environs here say one request at a time


def _same(lean: tuple[int, dict[str, str], bytes], whole: tuple[int, dict[str, str], bytes]) -> None:
    (lean_status, lean_headers, lean_body), (status, headers, body) = lean, whole
    assert lean_status == status
    assert lean_headers.keys() == headers.keys()
    for name in headers.keys() - {"X-Request-ID", "Content-Length"}:
        assert lean_headers[name] == headers[name], name
    if "Content-Length" in headers:
        assert int(lean_headers["Content-Length"]) == len(lean_body) and int(headers["Content-Length"]) == len(body)
    if lean_body != body:  # a probe's answer carries the time: the same fields, then
        assert json.loads(lean_body).keys() == json.loads(body).keys()


def test_the_lean_chain_is_the_stack_without_what_serves_only_staff_pages(handlers):
    lane, _ = handlers
    lean = [type(m).__name__ for m in _chain_members(lane.lean)]
    whole = [type(m).__name__ for m in _chain_members(lane)]
    assert "CsrfViewMiddleware" in whole and "StaffSessionMiddleware" in whole
    for staff_only in (
        "WhiteNoiseMiddleware",
        "StaffSessionMiddleware",
        "CsrfViewMiddleware",
        "StaffMessageMiddleware",
    ):
        assert staff_only not in lean
    # The six layers ApiEdgeMiddleware does the work of, in its one place; the rest in order.
    replaced = {name.rsplit(".", 1)[1] for name in ApiEdgeMiddleware.REPLACES}
    assert replaced <= set(whole)
    assert not replaced & set(lean)
    expected = [name for name in whole if name not in replaced and name in lean]
    assert [name for name in lean if name != "ApiEdgeMiddleware"] == expected
    assert lean.count("ApiEdgeMiddleware") == 1
    first = min(whole.index(name) for name in replaced)
    assert lean.index("ApiEdgeMiddleware") == len([n for n in whole[:first] if n in lean])


def test_the_six_layers_must_sit_together_for_the_edge_to_stand_for_them(settings):
    settings.MIDDLEWARE = [
        "config.observability.middleware.MetricsMiddleware",
        "config.middleware.EdgeMiddleware",
        "django.middleware.security.SecurityMiddleware",
        "config.middleware.HostileInputMiddleware",
        "django.middleware.gzip.GZipMiddleware",  # in between, and not staff-only
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]
    with pytest.raises(ImproperlyConfigured, match="ApiEdgeMiddleware"):
        lean_middleware(settings.MIDDLEWARE)
    settings.MIDDLEWARE = ["django.middleware.gzip.GZipMiddleware"]  # none of them: nothing to stand for
    assert lean_middleware(settings.MIDDLEWARE) == ["django.middleware.gzip.GZipMiddleware"]


def _chain_members(handler: Any) -> list[Any]:
    """The middleware instances of a handler's chain, outermost first (Django wraps each one in
    convert_exception_to_response; the instance is the wrapped function's closure)."""
    members: list[Any] = []
    current = handler._middleware_chain
    while True:
        instance = next(
            (c.cell_contents for c in current.__closure__ or () if hasattr(c.cell_contents, "get_response")), None
        )
        if instance is None:
            return members
        members.append(instance)
        current = instance.get_response


def _both(
    handlers: tuple[LaneWSGIHandler, WSGIHandler], method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    lane, whole = handlers
    lean_answer = call(lane, method, path, headers=headers)
    whole_answer = call(whole, method, path, headers=headers)
    _same(lean_answer, whole_answer)
    assert "X-Request-ID" in lean_answer[1] and "X-Request-ID" in whole_answer[1]
    return lean_answer


@pytest.mark.django_db(transaction=False)
def test_api_answers_match_the_whole_stack(handlers, alice):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice.raw_key}"}
    for method, path, headers in [
        ("GET", "/api/v1/users/me/", auth),
        ("HEAD", "/api/v1/users/me/", auth),
        ("OPTIONS", "/api/v1/sessions/", auth),
        ("DELETE", "/api/v1/users/me/", auth),  # a 405
        ("GET", "/api/v1/users/me", auth),  # APPEND_SLASH's redirect stays
        ("POST", "/api/v1/sessions", auth),  # for a write too (DEBUG off)
        ("GET", "/api/v1/sessions/?page_size=x", auth),  # a 400
        ("GET", "/api/v1/users/me/", {}),  # a 401
        ("GET", "/api/v1/nowhere/", auth),  # a 404
        ("GET", "/api/v1/nowhere", auth),  # a 404 that no slash would find
        ("GET", "/health/live", {}),
        ("GET", "/health", {}),
        ("GET", "/api/schema/", {}),  # a large answer
        # (Not /api/docs/: its page asks for a CSRF token, which only the whole stack sets as a
        # cookie; staff, who sign in with a session, get the whole stack.)
        ("GET", "/api/v1/users/me/", {**auth, "HTTP_HOST": "evil.example"}),  # ALLOWED_HOSTS stays
        ("GET", "/api/v1/users/me/?q=%ff", auth),  # hostile input stays
        ("GET", "/api/v1/users/me%00/", auth),
        ("GET", "/api/v1/users/me/", {**auth, "HTTP_X_REQUEST_ID": "0b6c1f0e-8a3f-4a57-9c52-3f0c7c1d2e4a"}),
    ]:
        _both(handlers, method, path, headers)


@pytest.mark.django_db(transaction=False)
@pytest.mark.parametrize(
    "overrides",
    [
        {"SECURE_SSL_REDIRECT": True},  # plain HTTP: the redirect, with the security headers
        {"SECURE_SSL_REDIRECT": True, "ALLOWED_HOSTS": ["127.0.0.1"]},  # and a bad Host in the redirect
        {"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"), "SECURE_HSTS_SECONDS": 600},  # HSTS
        {"SECURE_REFERRER_POLICY": "no-referrer, strict-origin", "SECURE_CROSS_ORIGIN_OPENER_POLICY": None},
        {"X_FRAME_OPTIONS": "SAMEORIGIN", "SECURE_CONTENT_TYPE_NOSNIFF": False},
        {"DISALLOWED_USER_AGENTS": [re.compile("badbot")]},  # a 403 from CommonMiddleware
        {"PREPEND_WWW": True},
        {"APPEND_SLASH": False},
    ],
    ids=["ssl-redirect", "ssl-redirect-bad-host", "hsts", "referrer", "frames", "user-agents", "www", "no-slash"],
)
def test_answers_under_other_security_settings_match_the_whole_stack(settings, alice, overrides, request):
    for name, value in overrides.items():
        setattr(settings, name, value)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        handlers = (LaneWSGIHandler(), WSGIHandler())  # built under these settings, as at start-up
        auth = {"HTTP_AUTHORIZATION": f"Bearer {alice.raw_key}", "HTTP_USER_AGENT": "badbot/1.0"}
        secure = {**auth, "HTTP_X_FORWARDED_PROTO": "https", "wsgi.url_scheme": "https"}
        answers = [
            _both(handlers, method, path, headers)
            for method, path, headers in [
                ("GET", "/api/v1/users/me/", auth),
                ("GET", "/api/v1/users/me/", secure),
                ("GET", "/api/v1/users/me", auth),
                ("GET", "/health/live", auth),  # exempt from the HTTPS redirect
                ("GET", "/api/v1/users/me/?q=%ff", auth),
            ]
        ]
        # Each setting did what it says (so the comparison above compared something).
        plain, secured, unslashed, live, _ = answers
        expected = {
            "ssl-redirect": lambda: plain[0] == 301 and plain[1]["Location"].startswith("https://") and live[0] == 200,
            "ssl-redirect-bad-host": lambda: plain[0] == 400,
            "hsts": lambda: "Strict-Transport-Security" in secured[1] and "Strict-Transport-Security" not in plain[1],
            "referrer": lambda: (
                plain[1]["Referrer-Policy"] == "no-referrer,strict-origin"
                and "Cross-Origin-Opener-Policy" not in plain[1]
            ),
            "frames": lambda: plain[1]["X-Frame-Options"] == "SAMEORIGIN" and "X-Content-Type-Options" not in plain[1],
            "user-agents": lambda: plain[0] == 403,
            "www": lambda: plain[0] == 301 and "//www." in plain[1]["Location"],
            "no-slash": lambda: unslashed[0] == 404,
        }
        assert expected[request.node.callspec.id](), answers
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        serving_one_request_at_a_time(False)


@pytest.mark.django_db(transaction=False)
def test_the_lean_chain_logs_and_counts_each_request_as_the_whole_stack_does(handlers, alice, caplog):
    from prometheus_client import REGISTRY

    def counted(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return REGISTRY.get_sample_value("agent_platform_http_requests_total", labels) or 0.0

    lane, whole = handlers
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice.raw_key}"}
    lines = []
    for handler in (lane, whole):
        before = counted("/api/v1/users/me/", "2xx"), counted("unmatched", "4xx")
        caplog.clear()
        with caplog.at_level("INFO", logger="request"):
            assert call(handler, "GET", "/api/v1/users/me/?secret=not-logged", headers=auth)[0] == 200
            assert call(handler, "GET", "/api/v1/nowhere/", headers=auth)[0] == 404
        assert (counted("/api/v1/users/me/", "2xx"), counted("unmatched", "4xx")) == (before[0] + 1, before[1] + 1)
        records = [r for r in caplog.records if r.name == "request"]
        assert len(records) == 2
        lines.append(
            [(r.getMessage().rsplit(" ", 1)[0], r.method, r.path, r.status, r.user_id, r.client_ip) for r in records]
        )  # type: ignore[attr-defined]
    assert lines[0] == lines[1]
    assert lines[0][0] == (
        "GET /api/v1/users/me/ 200",
        "GET",
        "/api/v1/users/me/",
        200,
        str(alice.user.pk),
        "127.0.0.1",
    )


@pytest.mark.django_db(transaction=False)
def test_a_write_through_the_lean_chain_answers_and_writes_like_the_whole_stack(handlers, alice):
    lane, whole = handlers
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice.raw_key}"}
    body = json.dumps({"agent_id": "lane-test", "title": "Through the lean chain"}).encode()
    lean_status, lean_headers, lean_body = call(lane, "POST", "/api/v1/sessions/", headers=auth, body=body)
    status, headers, whole_body = call(whole, "POST", "/api/v1/sessions/", headers=auth, body=body)
    assert lean_status == status == 201
    assert lean_headers.keys() == headers.keys()
    assert json.loads(lean_body).keys() == json.loads(whole_body).keys()
    assert json.loads(lean_body)["agent_id"] == "lane-test"


@pytest.mark.django_db(transaction=False)
def test_a_request_with_a_session_cookie_takes_the_whole_stack(handlers, root, root_client):
    lane, _ = handlers
    cookie = root_client.cookies[settings.SESSION_COOKIE_NAME].value
    status, _, body = call(
        lane, "GET", "/api/v1/users/me/", headers={"HTTP_COOKIE": f"{settings.SESSION_COOKIE_NAME}={cookie}"}
    )
    assert status == 200, body  # signed in by the session: the lean chain has no session
    assert json.loads(body)["email"] == root[0].email
    assert call(lane, "GET", "/api/v1/users/me/")[0] == 401


def _connected(signal: Any, receiver: Any) -> bool:
    return any(lookup[0] == _make_id(receiver) for lookup, *_ in signal.receivers)


def test_without_debug_the_query_log_and_the_caches_are_left_alone_at_each_request(settings):
    settings.DEBUG = False
    idle = idle_request_receivers()
    # Nothing writes the query log without DEBUG, and neither cache backend (the database table,
    # Redis) has a close() of its own.
    assert (request_started, reset_queries) in idle
    assert (request_finished, close_caches) in idle
    # Dropped at start-up (ProjectConfig.ready); the connections are still closed per request.
    assert not _connected(request_finished, close_caches)
    assert _connected(request_finished, close_old_connections)


def test_with_debug_or_echoed_sql_the_query_log_is_still_cleared_per_request(settings):
    settings.DEBUG = True
    assert (request_started, reset_queries) not in idle_request_receivers()
    settings.DEBUG = False
    settings.DB_POOL = dataclasses.replace(settings.DB_POOL, echo_sql=True)
    assert (request_started, reset_queries) not in idle_request_receivers()


def test_a_cache_backend_that_closes_its_connection_keeps_the_per_request_close(settings):
    settings.CACHES = {
        **settings.CACHES,
        "sessions": {"BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache", "LOCATION": "127.0.0.1:1"},
    }
    assert (request_finished, close_caches) not in idle_request_receivers()


@pytest.mark.django_db(transaction=False)
def test_a_served_request_is_freed_by_reference_counting_not_left_to_the_collector(handlers, alice):
    """DRF's view, request and response refer to each other; once the server closes the
    response, the handler breaks those cycles (config.handlers._release) and the FrozenListSerializer's child
    reaches its list weakly, so a page of messages is freed at once instead of waiting, with
    every row, for a collection."""
    import gc

    from rest_framework.request import Request
    from rest_framework.views import APIView

    from agent_sessions.models import Message
    from agent_sessions.services import session_append_message, session_create

    lane, _ = handlers
    session = session_create(actor=None, owner=alice.user, agent_id="a", title="t")
    for i in range(5):
        session_append_message(session_id=session.pk, role="user", content=f"m{i}")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice.raw_key}"}
    paths = [f"/api/v1/sessions/{session.pk}/", f"/api/v1/sessions/{session.pk}/messages/?page_size=50"]
    for path in paths:  # warm: imports, cached plans, key reuse
        assert call(lane, "GET", path, headers=auth)[0] == 200
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for path in paths:
            status, _, body = call(lane, "GET", path, headers=auth)
            assert status == 200, body
        gc.collect()
        left = [type(o) for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    kinds = {kind.__name__ for kind in left if issubclass(kind, (Request, APIView, Message))}
    assert not kinds, f"left to the collector: {kinds} among {len(left)} objects"
    assert len(left) == 0, sorted({kind.__name__ for kind in left})


@pytest.mark.django_db(transaction=False)
def test_a_host_that_passed_is_checked_again_once_allowed_hosts_change(handlers, alice, settings):
    lane, _ = handlers
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice.raw_key}"}
    assert call(lane, "GET", "/api/v1/users/me/", headers=auth)[0] == 200
    assert call(lane, "GET", "/api/v1/users/me/", headers={**auth, "HTTP_HOST": "evil.example"})[0] == 400
    settings.ALLOWED_HOSTS = ["api.example.com"]
    assert call(lane, "GET", "/api/v1/users/me/", headers=auth)[0] == 400  # testserver no longer passes
    assert call(lane, "GET", "/api/v1/users/me/", headers={**auth, "HTTP_HOST": "api.example.com"})[0] == 200
