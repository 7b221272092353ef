"""Who is acting and through which request: the context every audit row and log line carries.

``config.middleware.EdgeMiddleware`` binds one per HTTP request; management commands
bind a system context. Services never receive the request: the audit writer (``audit.services``)
reads this instead, as do the request log, the rate limits (the client address) and the API's
viewset base (the status an action answers).
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

from config.db.text import storable

_current: ContextVar[RequestContext | None] = ContextVar("audit_request_context", default=None)


@dataclass
class RequestContext:
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    ip_address: str | None = None
    user_agent: str | None = None
    path: str | None = None
    method: str | None = None
    # The status the view answers when the operation succeeds; audit rows are written inside
    # the operation's transaction, before the response exists.
    response_status: int | None = None
    # Set for system actions (management commands): "system:expire_sessions".
    system_actor: str | None = None
    user_id: uuid.UUID | None = None
    # The API key the request authenticated with (its id and non-secret display hint), so that
    # audit rows say which of a user's keys acted.
    api_key_id: uuid.UUID | None = None
    api_key_hint: str | None = None

    @property
    def request_id_text(self) -> str:
        """The request id as text (the log line and the X-Request-ID header), made once."""
        text = self.__dict__.get("_request_id_text")
        if text is None or text[0] is not self.request_id:
            text = self.__dict__["_request_id_text"] = (self.request_id, str(self.request_id))
        return text[1]


def current() -> RequestContext | None:
    return _current.get()


def bind(context: RequestContext) -> Token[RequestContext | None]:
    """Make ``context`` the current one until ``unbind`` (``bound`` as two calls, for the request
    path, where a generator-based context manager per request shows in the profile)."""
    return _current.set(context)


def unbind(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


@contextmanager
def bound(context: RequestContext) -> Iterator[RequestContext]:
    token = bind(context)
    try:
        yield context
    finally:
        unbind(token)


@contextmanager
def system_actor(name: str) -> Iterator[RequestContext]:
    """Run management-command work as a named system actor (audit rows say who did it)."""
    with bound(RequestContext(system_actor=f"system:{name}")) as context:
        yield context


def authenticated_with_key(key_id: uuid.UUID, hint: str) -> None:
    """Tell the audit writer which API key the current request authenticated with."""
    context = current()
    if context is not None:
        context.api_key_id = key_id
        context.api_key_hint = hint


@contextmanager
def acting_as_system(name: str) -> Iterator[RequestContext]:
    """Within a request, do part of the work as a named system actor ("system:oidc" provisioning
    a user): its audit rows say who did it, and keep the request's id, address and path."""
    outer = current()
    context = replace(outer, system_actor=f"system:{name}") if outer is not None else RequestContext()
    context.system_actor = f"system:{name}"
    with bound(context) as bound_context:
        yield bound_context


def expect_status(status: int) -> None:
    """Tell the audit writer which status the current request answers on success."""
    context = current()
    if context is not None:
        context.response_status = status


def parse_request_id(raw: str | None) -> uuid.UUID | None:
    """A well-formed incoming X-Request-ID (a UUID in canonical form) is kept; else None."""
    if not raw or len(raw) != 36:
        return None
    try:
        parsed = uuid.UUID(raw)
    except ValueError:
        return None
    return parsed if str(parsed) == raw.lower() else None


@lru_cache(maxsize=1)
def _trusted_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in settings.TRUSTED_PROXIES)


def _is_trusted(address: str) -> bool:
    return _is_trusted_by(address, _trusted_networks())


# Asked on every request about the same few addresses (the proxies, the clients); keyed by the
# networks too, so a change of TRUSTED_PROXIES (and _trusted_networks.cache_clear()) takes effect.
@lru_cache(maxsize=4096)
def _is_trusted_by(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


@lru_cache(maxsize=4096)
def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the first untrusted hop of X-Forwarded-For when the peer is a trusted proxy.

    The original trusted the first X-Forwarded-For entry from anyone, which any client can forge.
    """
    remote = _valid_ip(request.META.get("REMOTE_ADDR", "") or "")
    if remote is None or not _is_trusted(remote):
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        ip = _valid_ip(hop)
        if ip is None:
            break
        if not _is_trusted(ip):
            return ip
    return remote


def from_request(request: HttpRequest) -> RequestContext:
    return RequestContext(
        request_id=parse_request_id(request.META.get("HTTP_X_REQUEST_ID")) or uuid.uuid4(),
        ip_address=client_ip(request),
        user_agent=storable(request.META.get("HTTP_USER_AGENT"), 500),
        path=storable(request.path, 500),
        method=storable(request.method, 10),
    )
