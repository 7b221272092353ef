"""The request log's line (config.logging.RequestLog): written directly under the production
logging configuration, through ``logging`` under any other, and the same line either way."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from config.context import RequestContext, bind, unbind
from config.logging import JSONFormatter, RequestContextFilter, RequestLog, SecretRedactingFilter

REQUEST_ID = "0b6c1f0e-8a3f-4a57-9c52-3f0c7c1d2e4a"
RAW_KEY = "sk_live_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"


def _production_handler() -> logging.StreamHandler[io.StringIO]:
    """settings.LOGGING's console handler, writing to a buffer."""
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JSONFormatter())
    handler.addFilter(RequestContextFilter())
    handler.addFilter(SecretRedactingFilter())
    return handler


@contextmanager
def production_logging() -> Iterator[logging.StreamHandler[io.StringIO]]:
    """The root logger as settings.LOGGING leaves it (one JSON stream handler); pytest's own
    capture handlers (added to the root for each test phase) are put back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = _production_handler()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("request-test").setLevel(logging.NOTSET)
    try:
        yield handler
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)


def _write(log: RequestLog, path: str, *, status: int = 200) -> None:
    """What config.middleware.log_request writes, inside a request's bound context."""
    fields = {
        "method": "GET",
        "path": path,
        "status": status,
        "duration_ms": 1.25,
        "user_id": None,
        "client_ip": "127.0.0.1",
    }
    token = bind(RequestContext(request_id=uuid.UUID(REQUEST_ID), method="GET", path=path))
    try:
        log.info("%s %s %s %.1fms", ("GET", path, status, 1.25), fields, REQUEST_ID)
    finally:
        unbind(token)


def _lines(handler: logging.StreamHandler[io.StringIO]) -> list[dict[str, object]]:
    return [json.loads(line) for line in handler.stream.getvalue().splitlines()]


class _Pass(logging.Filter):
    pass


def test_the_direct_line_is_the_line_logging_writes():
    with production_logging() as handler:
        log = RequestLog("request-test")
        assert log._direct_handler() is handler  # the direct path is taken
        _write(log, "/api/v1/users/me/")
        logger = logging.getLogger("request-test")
        logger.addFilter(_Pass())  # any filter of its own: through logging
        try:
            assert log._direct_handler() is None
            _write(log, "/api/v1/users/me/")
        finally:
            logger.filters.clear()
        direct, through_logging = _lines(handler)
        assert list(direct) == list(through_logging)  # the same fields in the same order
        assert {**direct, "time": None} == {**through_logging, "time": None}
        assert direct["request_id"] == REQUEST_ID
        assert direct["message"] == "GET /api/v1/users/me/ 200 1.2ms"


def test_a_key_in_the_path_is_redacted_in_the_message_and_the_path_field():
    with production_logging() as handler:
        log = RequestLog("request-test")
        _write(log, f"/api/v1/{RAW_KEY}/", status=404)
        logger = logging.getLogger("request-test")
        logger.addFilter(_Pass())
        try:
            _write(log, f"/api/v1/{RAW_KEY}/", status=404)
        finally:
            logger.filters.clear()
        text = handler.stream.getvalue()
        assert RAW_KEY not in text
        for line in _lines(handler):
            assert line["path"] == "/api/v1/[REDACTED]/"
            assert line["message"] == "GET /api/v1/[REDACTED]/ 404 1.2ms"


def test_any_other_configuration_goes_through_logging():
    with production_logging() as handler:
        log = RequestLog("request-test")
        second = logging.handlers.BufferingHandler(10)  # what pytest's caplog adds, say
        logging.getLogger().addHandler(second)
        assert log._direct_handler() is None
        _write(log, "/health")
        assert [r.getMessage() for r in second.buffer] == ["GET /health 200 1.2ms"]
        assert second.buffer[0].path == "/health"  # type: ignore[attr-defined]
        assert _lines(handler)[0]["message"] == "GET /health 200 1.2ms"  # and the first handler too


def test_a_level_that_drops_the_line_drops_it():
    with production_logging() as handler:
        log = RequestLog("request-test")
        logging.getLogger("request-test").setLevel(logging.WARNING)
        try:
            _write(log, "/health")
        finally:
            logging.getLogger("request-test").setLevel(logging.NOTSET)
        assert handler.stream.getvalue() == ""
        text_handler = _production_handler()
        text_handler.setFormatter(logging.Formatter("%(message)s"))  # LOG_FORMAT=text: through logging
        logging.getLogger().handlers = [text_handler]
        _write(log, "/health")
        assert text_handler.stream.getvalue() == "GET /health 200 1.2ms\n"
