"""Structured logs: LOG_FORMAT=json (production) or text, every line tagged with the request id."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

# What each record costs (the logging HOWTO's "Optimization"): no format here prints them: the
# caller's file and line (a stack walk per record), the thread's name and the multiprocessing
# process name. The request log writes one record per request. (The process id stays: gunicorn's
# own log lines print it.)
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False

# Attributes every LogRecord is made with; the ones formatting or our filters add. Anything else
# was passed through `extra=` and is a field.
_RECORD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_ADDED = frozenset({"message", "asctime", "request_id"})


def _encode(entry: dict[str, object]) -> str:
    # orjson: a tenth of the standard library's cost on a request log line (bench/README.md).
    # Non-ASCII text is written as UTF-8, not escaped; anything it cannot encode is str()-ed.
    return orjson.dumps(entry, default=str).decode()


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from config.context import current  # not at import: settings load this module

        context = current()
        record.request_id = context.request_id_text if context and context.method else "-"
        return True


_LEVELS = {name: name.lower() for name in logging.getLevelNamesMapping()}
_second: list[tuple[int, str]] = [(-1, "")]


def _timestamp(created: float) -> str:
    """``created`` in ISO 8601, UTC, to the millisecond (what ``datetime.isoformat`` prints), the
    date and time to the second made once per second: a request log line is written per request."""
    whole = int(created)
    second, text = _second[0]
    if whole != second:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second[0] = (whole, text)
    return f"{text}.{int((created - whole) * 1000):03d}+00:00"


def _entry(created: float, levelname: str, name: str, message: str, request_id: str) -> dict[str, object]:
    """A JSON log line's leading fields; the record's extras follow them."""
    return {
        "time": _timestamp(created),
        "level": _LEVELS.get(levelname) or levelname.lower(),
        "logger": name,
        "message": message,
        "request_id": request_id,
    }


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        entry = _entry(
            record.created, record.levelname, record.name, record.getMessage(), fields.get("request_id", "-")
        )
        # The extras come after the attributes the record was made with (makeRecord sets them
        # last; filters may add more): walk back from the end to the first of those.
        extra: list[str] = []
        for name in reversed(fields):
            if name in _RECORD:
                break
            if name not in _ADDED and name[0] != "_":
                extra.append(name)
        for name in reversed(extra):
            entry[name] = fields[name]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


_SECRET_PATTERNS = (
    # SHA-256 hex (API key hashes), password hashes, raw API keys.
    r"\b[0-9a-f]{64}\b",
    r"(?:argon2|pbkdf2_sha256|pbkdf2_sha1|scrypt)\$[^'\s,)]+",
    r"\bsk_[a-z]{2,8}_[0-9A-Za-z]{20,}",
)


class SecretRedactingFilter(logging.Filter):
    """For DB_ECHO_SQL: statement parameters include key hashes and password hashes; mask them."""

    def __init__(self) -> None:
        super().__init__()
        import re

        self._pattern = re.compile("|".join(_SECRET_PATTERNS))

    def _redact(self, value: object) -> object:
        if isinstance(value, str):
            # Each pattern holds a "$", "sk_" or 64 characters: most values hold none of them.
            if len(value) < 64 and "$" not in value and "sk_" not in value:
                return value
            return self._pattern.sub("[REDACTED]", value)
        if isinstance(value, (list, tuple)):
            return type(value)(self._redact(v) for v in value)
        return value

    def _may_hold_secret(self, values: tuple[object, ...]) -> bool:
        # One record per request passes here: a plain loop over its few arguments, and only the
        # ones that could match are handed to _redact.
        for value in values:
            if type(value) is str:
                if len(value) >= 64 or "$" in value or "sk_" in value:
                    return True
            elif not isinstance(value, (int, float, type(None))):
                return True
        return False

    def redacted_args(self, args: tuple[object, ...]) -> tuple[object, ...]:
        return tuple(self._redact(a) for a in args) if self._may_hold_secret(args) else args

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if args and isinstance(args, tuple):
            record.args = self.redacted_args(args)
        fields = record.__dict__
        for name in REDACTED_FIELDS:
            if name in fields:
                fields[name] = self._redact(fields[name])
        return True


# Extra fields that may hold what a client sent: the SQL log's statements and parameters, the
# request log's path (a key pasted into a URL).
REDACTED_FIELDS = ("sql", "params", "path")


class RequestLog:
    """The request log's one line per request, as ``logger.info(message, *args, extra=fields)``
    on the ``request`` logger writes it.

    Under the configuration settings.LOGGING sets up (the root logger's one stream handler, the
    JSON formatter, the request-context and redaction filters, nothing on the ``request`` logger
    itself) the line is built and written here, the same fields in the same order, the same
    redaction, under the handler's lock: a LogRecord, its filters and the handler plumbing cost
    the request log two thirds of its price (bench/README.md). Under any other configuration
    (text lines, another handler, pytest's caplog, a level that drops it) it goes through
    ``logging`` as it always did.
    """

    def __init__(self, name: str = "request") -> None:
        self.logger = logging.getLogger(name)
        self._handler: logging.Handler | None = None  # the root handler last found to qualify
        self._redaction: SecretRedactingFilter | None = None

    def info(self, message: str, args: tuple[object, ...], fields: Mapping[str, Any], request_id: str) -> None:
        handler = self._direct_handler()
        if handler is None:
            self.logger.info(message, *args, extra=fields)
            return
        redaction = self._redaction
        assert redaction is not None and isinstance(handler, logging.StreamHandler)
        entry = _entry(time.time(), "INFO", self.logger.name, message % redaction.redacted_args(args), request_id)
        entry.update(fields)
        for name in REDACTED_FIELDS:
            if name in entry:
                entry[name] = redaction._redact(entry[name])
        line = _encode(entry) + handler.terminator
        handler.acquire()
        try:
            handler.stream.write(line)
            handler.flush()
        except Exception:
            handler.handleError(self.logger.makeRecord(self.logger.name, logging.INFO, "", 0, message, args, None))
        finally:
            handler.release()

    def _direct_handler(self) -> logging.Handler | None:
        logger = self.logger
        root = logging.root
        handlers = root.handlers
        if (
            len(handlers) != 1
            or logger.handlers
            or logger.filters
            or root.filters
            or not logger.propagate
            or logger.disabled
            or not logger.isEnabledFor(logging.INFO)
            or handlers[0].level > logging.INFO
        ):
            return None
        handler = handlers[0]
        if handler is not self._handler:
            self._redaction = _standard_filters(handler)
            self._handler = handler if self._redaction is not None else None
        return self._handler


def _standard_filters(handler: logging.Handler) -> SecretRedactingFilter | None:
    """The handler's redaction filter if the handler is settings.LOGGING's JSON stream handler
    (its filters exactly the request context's and the redaction's), else None."""
    if type(handler) is not logging.StreamHandler or type(handler.formatter) is not JSONFormatter:
        return None
    kinds = [type(f) for f in handler.filters]
    if kinds != [RequestContextFilter, SecretRedactingFilter]:
        return None
    redaction = handler.filters[1]
    assert isinstance(redaction, SecretRedactingFilter)
    return redaction
