"""The production WSGI handler (config.handlers): API and probe requests without a session cookie
take the shorter middleware chain, and answer exactly what the whole stack answers."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from config.handlers import LaneWSGIHandler


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


def _same(lean: tuple[int, dict[str, str], bytes], whole: tuple[int, dict[str, str], bytes]) -> None:
    (lean_status, lean_headers, lean_body), (status, headers, body) = lean, whole
    assert lean_status == status
    assert lean_headers.keys() == headers.keys()
    for name in headers.keys() - {"X-Request-ID"}:
        assert lean_headers[name] == headers[name], name
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
    assert [name for name in whole if name in lean] == lean  # the rest, in the same order
    assert {"MetricsMiddleware", "EdgeMiddleware", "SecurityMiddleware", "HostileInputMiddleware"} <= set(lean)
    assert {"CommonMiddleware", "XFrameOptionsMiddleware"} <= set(lean)


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


@pytest.mark.django_db(transaction=False)
def test_api_answers_match_the_whole_stack(handlers, alice):
    lane, whole = handlers
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice.raw_key}"}
    for method, path, headers in [
        ("GET", "/api/v1/users/me/", auth),
        ("GET", "/api/v1/users/me", auth),  # APPEND_SLASH's redirect stays
        ("GET", "/api/v1/sessions/?page_size=x", auth),  # a 400
        ("GET", "/api/v1/users/me/", {}),  # a 401
        ("GET", "/api/v1/nowhere/", auth),  # a 404
        ("GET", "/health/live", {}),
        ("GET", "/api/v1/users/me/", {**auth, "HTTP_HOST": "evil.example"}),  # ALLOWED_HOSTS stays
        ("GET", "/api/v1/users/me/?q=%ff", auth),  # hostile input stays
    ]:
        _same(call(lane, method, path, headers=headers), call(whole, method, path, headers=headers))


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
