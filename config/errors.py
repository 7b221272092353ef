"""Domain errors shared by the apps' models and services, and the one "database unavailable"
answer. ``config.api.exceptions`` maps them to HTTP.

Models and services raise these without knowing about HTTP. The API answers a
``StateConflict`` with 409 and an ``InvalidInput`` with 400 naming the field.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # More of the answer's body, beside detail and code (the current revision, say).
        self.details = details


class InvalidInput(DomainError):
    """The request asks for something the rules forbid (a scope the owner can't hold, say)."""

    code = "invalid"


class StateConflict(DomainError):
    """The resource is in a state that forbids the operation (a completed session, say)."""

    code = "conflict"


# A lost, refusing or exhausted database: the same JSON 503 from DRF views, the admin and
# the health probes' middleware alike.
DATABASE_UNAVAILABLE_STATUS = 503
DATABASE_UNAVAILABLE_BODY = {
    "detail": "The database is unavailable or overloaded; retry shortly.",
    "code": "database_unavailable",
}
DATABASE_UNAVAILABLE_HEADERS = {"Retry-After": "1"}
