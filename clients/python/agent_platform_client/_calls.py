"""What each operation sends, written once for ``Client`` and ``AsyncClient``: method, path,
query and body of every request, the idempotency key of every mutation, and the retry policy.
"""

from __future__ import annotations

import datetime
import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from agent_platform_client.errors import IdempotencyKeyInFlight, PlatformError, error_for, parse_retry_after

API_PREFIX = "/api/v1/"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_BATCH = 100  # the service's bound on one batch append
MAX_LAST = 1000  # the service's bound on ?last=N
MAX_PAGE = 200  # the service's largest message page

_UNSET: Any = object()


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a request again.

    Retried: no answer (connection refused, reset or dropped, timeout), 429, 502, 503, 504 and
    409 ``idempotency_key_in_flight``; never any other 4xx. A ``Retry-After`` answer waits exactly
    that long, unless it asks for more than ``max_retry_after`` seconds: then the error is raised
    at once (it carries ``retry_after``). Without one the wait is exponential with full jitter.
    A mutation carries one ``Idempotency-Key`` on every attempt, so a retry of a request that
    committed but whose answer was lost replays the stored answer instead of writing twice.
    """

    max_attempts: int = 5
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based) when the service named none."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


@dataclass
class Call:
    """One logical request; every attempt sends exactly these bytes and this idempotency key."""

    method: str
    path: str  # relative to the base URL, or an absolute URL (a page link)
    params: dict[str, Any] | None = None
    body: Any = _UNSET
    idempotency_key: str | None = None
    content: bytes | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.body is not _UNSET:
            self.content = encode_json(self.body)

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.content is not None:
            headers["Content-Type"] = "application/json"
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        return headers


def encode_json(body: Any) -> bytes:
    """The request body. Items travel as ``json.dumps`` writes them, so the service stores (and
    answers) the same spelling; NaN and Infinity are refused here, as the service would."""
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: send it escaped, and let the service answer its 400 naming the field.
        return json.dumps(body, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def mutation_key(key: str | None) -> str:
    """The caller's idempotency key (checked), or a fresh one for this logical mutation."""
    if key is None:
        return uuid.uuid4().hex
    if not 1 <= len(key) <= 255 or any(not 0x21 <= ord(ch) <= 0x7E for ch in key):
        raise ValueError("An idempotency key is 1-255 visible ASCII characters.")
    return key


def decode(status: int, content: bytes) -> Any:
    if status == 204 or not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace")


def raise_for(status: int, content: bytes, headers: Mapping[str, str]) -> Any:
    """The decoded body of a 2xx answer; the typed error of any other."""
    body = decode(status, content)
    if 200 <= status < 300:
        return body
    raise error_for(status, body, {name.lower(): value for name, value in headers.items()})


def retry_wait(policy: RetryPolicy, attempt: int, error: PlatformError | None) -> float | None:
    """Seconds to wait before the next attempt, or None to give up and raise."""
    if attempt >= policy.max_attempts:
        return None
    if error is None:  # no answer at all
        return policy.backoff(attempt)
    if error.status not in RETRY_STATUSES and not isinstance(error, IdempotencyKeyInFlight):
        return None
    retry_after = parse_retry_after(error.headers.get("retry-after"))
    if retry_after is None:
        return policy.backoff(attempt)
    if retry_after > policy.max_retry_after:
        return None
    return retry_after


def _sid(session_id: Any) -> str:
    return quote(str(session_id), safe="")


def _fields(**values: Any) -> dict[str, Any]:
    """The keyword arguments the caller gave (``_UNSET`` ones left out; None is a value)."""
    return {name: value for name, value in values.items() if value is not _UNSET}


def _timestamp(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.datetime) else value


class Calls:
    """Every operation of the API as a ``Call``."""

    # --- sessions -------------------------------------------------------------------------------

    @staticmethod
    def session_create(
        *,
        agent_id: str,
        title: str,
        context: Any,
        metadata: Any,
        expires_at: Any,
        external_id: Any,
        idle_expiry: Any,
        idempotency_key: str | None,
    ) -> Call:
        body = _fields(
            agent_id=agent_id,
            title=title,
            context=context,
            metadata=metadata,
            expires_at=_timestamp(expires_at),
            external_id=external_id,
            idle_expiry=idle_expiry,
        )
        return Call("POST", "sessions/", body=body, idempotency_key=mutation_key(idempotency_key))

    @staticmethod
    def session_get(session_id: Any) -> Call:
        return Call("GET", f"sessions/{_sid(session_id)}/")

    @staticmethod
    def session_list(**filters: Any) -> Call:
        params = {name: value for name, value in filters.items() if value is not None}
        return Call("GET", "sessions/", params=params)

    @staticmethod
    def session_update(session_id: Any, *, idempotency_key: str | None, **changes: Any) -> Call:
        return Call(
            "PATCH",
            f"sessions/{_sid(session_id)}/",
            body=_fields(**changes),
            idempotency_key=mutation_key(idempotency_key),
        )

    @staticmethod
    def session_delete(session_id: Any, *, idempotency_key: str | None) -> Call:
        return Call("DELETE", f"sessions/{_sid(session_id)}/", idempotency_key=mutation_key(idempotency_key))

    @staticmethod
    def session_action(session_id: Any, action: str, body: dict[str, Any], *, idempotency_key: str | None) -> Call:
        return Call(
            "POST", f"sessions/{_sid(session_id)}/{action}/", body=body, idempotency_key=mutation_key(idempotency_key)
        )

    # --- messages -------------------------------------------------------------------------------

    @staticmethod
    def message_append(session_id: Any, message: dict[str, Any], *, idempotency_key: str | None) -> Call:
        return Call(
            "POST",
            f"sessions/{_sid(session_id)}/messages/",
            body=message,
            idempotency_key=mutation_key(idempotency_key),
        )

    @staticmethod
    def message_append_batch(
        session_id: Any,
        messages: Sequence[Mapping[str, Any]],
        *,
        expected_revision: int | None,
        state_delta: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> Call:
        if not 1 <= len(messages) <= MAX_BATCH:
            raise ValueError(f"A batch holds 1 to {MAX_BATCH} messages, not {len(messages)}.")
        body: dict[str, Any] = {"messages": [dict(message) for message in messages]}
        if expected_revision is not None:
            body["expected_revision"] = expected_revision
        if state_delta is not None:
            body["state_delta"] = dict(state_delta)
        return Call(
            "POST",
            f"sessions/{_sid(session_id)}/messages/batch/",
            body=body,
            idempotency_key=mutation_key(idempotency_key),
        )

    @staticmethod
    def message_list(session_id: Any, *, page_size: int | None = None, cursor: str | None = None) -> Call:
        params: dict[str, Any] = {}
        if page_size is not None:
            params["page_size"] = page_size
        if cursor is not None:
            params["cursor"] = cursor
        return Call("GET", f"sessions/{_sid(session_id)}/messages/", params=params)

    @staticmethod
    def message_last(session_id: Any, n: int) -> Call:
        return Call("GET", f"sessions/{_sid(session_id)}/messages/", params={"last": n})

    @staticmethod
    def message_pop(session_id: Any, *, count: int, expected_revision: int | None, idempotency_key: str | None) -> Call:
        body: dict[str, Any] = {"count": count}
        if expected_revision is not None:
            body["expected_revision"] = expected_revision
        return Call(
            "POST",
            f"sessions/{_sid(session_id)}/messages/pop/",
            body=body,
            idempotency_key=mutation_key(idempotency_key),
        )

    @staticmethod
    def message_clear(session_id: Any, *, expected_revision: int | None, idempotency_key: str | None) -> Call:
        body: dict[str, Any] = {}
        if expected_revision is not None:
            body["expected_revision"] = expected_revision
        return Call(
            "POST",
            f"sessions/{_sid(session_id)}/messages/clear/",
            body=body,
            idempotency_key=mutation_key(idempotency_key),
        )

    @staticmethod
    def page(url: str) -> Call:
        return Call("GET", url)


def message_body(
    *,
    role: str | None,
    content: str | None,
    item: Mapping[str, Any] | None,
    kind: str | None,
    tool_calls: Sequence[Mapping[str, Any]] | None,
    metadata: Mapping[str, Any] | None,
    token_count: int | None,
) -> dict[str, Any]:
    """One message's fields as the service takes them (absent ones left out)."""
    if item is None and (role is None or content is None):
        raise ValueError("A message without an item needs role and content.")
    values = {
        "role": role,
        "content": content,
        "item": item,
        "kind": kind,
        "tool_calls": tool_calls,
        "metadata": metadata,
        "token_count": token_count,
    }
    return {name: value for name, value in values.items() if value is not None}
