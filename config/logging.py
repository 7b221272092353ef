"""Structured logs: LOG_FORMAT=json (production) or text, every line tagged with the request id."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# What each record costs (the logging HOWTO's "Optimization"): no format here prints them: the
# caller's file and line (a stack walk per record), the thread's name and the multiprocessing
# process name. The request log writes one record per request. (The process id stays: gunicorn's
# own log lines print it.)
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False

# Attributes every LogRecord has; anything else was passed through `extra=` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from config.context import current

        context = current()
        record.request_id = str(context.request_id) if context and context.method else "-"
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


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

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(self._redact(a) for a in record.args) if isinstance(record.args, tuple) else record.args
        for name in ("sql", "params"):
            if hasattr(record, name):
                setattr(record, name, self._redact(getattr(record, name)))
        return True
