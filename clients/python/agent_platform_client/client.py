"""``Client`` (blocking) and ``AsyncClient`` (asyncio) for the sessions and messages API.

Both send the same requests (``_calls``); they differ only in how they wait. Every mutation
carries one ``Idempotency-Key`` for all its attempts. ``AsyncClient`` mutations run to their
outcome even when the awaiting task is cancelled: the cancellation is raised once the service
has answered (or every retry failed), so a cancelled caller never leaves a write whose fate is
unknown to the service *and* to the client (a retry with the same key would replay it).
"""

from __future__ import annotations

import asyncio
import builtins
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from agent_platform_client._calls import (
    _UNSET,
    API_PREFIX,
    MAX_LAST,
    MAX_PAGE,
    Call,
    Calls,
    RetryPolicy,
    message_body,
    raise_for,
    retry_wait,
)
from agent_platform_client.errors import PlatformError, TransportError
from agent_platform_client.types import (
    AppendResult,
    BatchResult,
    ClearResult,
    Message,
    MessagePage,
    PopResult,
    Session,
    SessionPage,
)

_T = TypeVar("_T")

# Failures where no request reached the service's application, or its answer was lost.
# LocalProtocolError and UnsupportedProtocol are our own mistakes: retrying cannot help.
_NO_RETRY_TRANSPORT = (httpx.LocalProtocolError, httpx.UnsupportedProtocol)


def _api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    if not root.endswith(API_PREFIX.rstrip("/")):
        root += API_PREFIX.rstrip("/")
    return root + "/"


class _Config:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        self.base_url = base_url
        self.api_root = _api_root(base_url)
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.default_headers = {
            "Authorization": f"Bearer {api_key}",
            "User-Agent": "agent-platform-client/1.0",
            **(headers or {}),
        }

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.base_url!r})"

    def _settings(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "retry": self.retry}


def _transport_error(call: Call, exc: Exception, attempts: int) -> TransportError:
    return TransportError(f"no answer to {call.method} {call.path} after {attempts} attempt(s): {exc!r}")


# --- blocking ----------------------------------------------------------------------------------


class Client(_Config):
    """The blocking client: ``Client(base_url, api_key)``; ``.sessions`` and ``.messages``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, retry=retry, headers=headers)
        self._http = httpx.Client(base_url=self.api_root, headers=self.default_headers, timeout=timeout)
        self.sessions = Sessions(self)
        self.messages = Messages(self)

    def to_async(self) -> AsyncClient:
        """An ``AsyncClient`` with the same service, key and policies."""
        return AsyncClient(self.base_url, self.api_key, headers=self.default_headers, **self._settings())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, call: Call) -> Any:
        """One logical request: attempts until an answer that is not retried, or none is left."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, content=call.content, headers=call.headers()
                )
            except _NO_RETRY_TRANSPORT:
                raise
            except httpx.TransportError as exc:
                wait = retry_wait(self.retry, attempt, None)
                if wait is None:
                    raise _transport_error(call, exc, attempt) from exc
                time.sleep(wait)
                continue
            try:
                return raise_for(response.status_code, response.content, response.headers)
            except PlatformError as error:
                wait = retry_wait(self.retry, attempt, error)
                if wait is None:
                    raise
                time.sleep(wait)


class Sessions:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        agent_id: str,
        title: str,
        *,
        context: Mapping[str, Any] | None = _UNSET,
        metadata: Mapping[str, Any] | None = _UNSET,
        expires_at: Any = _UNSET,
        external_id: str | None = _UNSET,
        idle_expiry: bool = _UNSET,
        idempotency_key: str | None = None,
    ) -> Session:
        """A new session (``idle_expiry=False``: never completed for being idle; see the README)."""
        return self._client.send(
            Calls.session_create(
                agent_id=agent_id,
                title=title,
                context=context,
                metadata=metadata,
                expires_at=expires_at,
                external_id=external_id,
                idle_expiry=idle_expiry,
                idempotency_key=idempotency_key,
            )
        )

    def get(self, session_id: str) -> Session:
        return self._client.send(Calls.session_get(session_id))

    def list(
        self,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        external_id: str | None = None,
        search: str | None = None,
        ordering: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> SessionPage:
        """One page of sessions (``count``, ``next``, ``previous``, ``results``)."""
        return self._client.send(
            Calls.session_list(
                status=status,
                agent_id=agent_id,
                external_id=external_id,
                search=search,
                ordering=ordering,
                page=page,
                page_size=page_size,
            )
        )

    def iter(self, **filters: Any) -> Iterator[Session]:
        """Every session matching ``filters`` (those of ``list``), page after page."""
        page = self.list(**filters)
        yield from page["results"]
        while link := page.get("next"):
            page = self._client.send(Calls.page(link))
            yield from page["results"]

    def find(self, *, agent_id: str, external_id: str) -> Session | None:
        """The live session with this agent and external id, if there is one."""
        results = self.list(agent_id=agent_id, external_id=external_id)["results"]
        return results[0] if results else None

    def update(
        self,
        session_id: str,
        *,
        title: str = _UNSET,
        context: Mapping[str, Any] = _UNSET,
        metadata: Mapping[str, Any] = _UNSET,
        idempotency_key: str | None = None,
    ) -> Session:
        """Change the title; merge keys into context and metadata."""
        return self._client.send(
            Calls.session_update(
                session_id, title=title, context=context, metadata=metadata, idempotency_key=idempotency_key
            )
        )

    def delete(self, session_id: str, *, idempotency_key: str | None = None) -> None:
        self._client.send(Calls.session_delete(session_id, idempotency_key=idempotency_key))

    def complete(self, session_id: str, *, reason: str = "", idempotency_key: str | None = None) -> Session:
        return self._client.send(
            Calls.session_action(session_id, "complete", {"reason": reason}, idempotency_key=idempotency_key)
        )

    def fail(self, session_id: str, *, error: str = "", idempotency_key: str | None = None) -> Session:
        return self._client.send(
            Calls.session_action(session_id, "fail", {"error": error}, idempotency_key=idempotency_key)
        )

    def cancel(self, session_id: str, *, reason: str = "", idempotency_key: str | None = None) -> Session:
        return self._client.send(
            Calls.session_action(session_id, "cancel", {"reason": reason}, idempotency_key=idempotency_key)
        )

    def transfer(self, session_id: str, *, user: str, idempotency_key: str | None = None) -> Session:
        """Move a session to another user (a platform admin's key)."""
        return self._client.send(
            Calls.session_action(session_id, "transfer", {"user": str(user)}, idempotency_key=idempotency_key)
        )


class Messages:
    def __init__(self, client: Client) -> None:
        self._client = client

    def append(
        self,
        session_id: str,
        *,
        role: str | None = None,
        content: str | None = None,
        item: Mapping[str, Any] | None = None,
        kind: str | None = None,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        metadata: Mapping[str, Any] | None = None,
        token_count: int | None = None,
        expected_revision: int | None = None,
        state_delta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append one message; the answer is the stored message plus the session's ``revision``."""
        body = message_body(
            role=role,
            content=content,
            item=item,
            kind=kind,
            tool_calls=tool_calls,
            metadata=metadata,
            token_count=token_count,
        )
        if expected_revision is not None:
            body["expected_revision"] = expected_revision
        if state_delta is not None:
            body["state_delta"] = dict(state_delta)
        return self._client.send(Calls.message_append(session_id, body, idempotency_key=idempotency_key))

    def append_batch(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        expected_revision: int | None = None,
        state_delta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> BatchResult:
        """Append 1-100 messages atomically, with consecutive sequences (or none of them)."""
        return self._client.send(
            Calls.message_append_batch(
                session_id,
                messages,
                expected_revision=expected_revision,
                state_delta=state_delta,
                idempotency_key=idempotency_key,
            )
        )

    def list(self, session_id: str, *, page_size: int | None = None, cursor: str | None = None) -> MessagePage:
        """One page of messages in sequence order (``next``/``previous`` links, ``revision``)."""
        return self._client.send(Calls.message_list(session_id, page_size=page_size, cursor=cursor))

    def page(self, url: str) -> MessagePage:
        """The page a ``next`` or ``previous`` link names."""
        return self._client.send(Calls.page(url))

    def iter(self, session_id: str, *, page_size: int = MAX_PAGE) -> Iterator[Message]:
        """Every message, oldest first."""
        page = self.list(session_id, page_size=page_size)
        yield from page["results"]
        while link := page.get("next"):
            page = self.page(link)
            yield from page["results"]

    def all(self, session_id: str) -> builtins.list[Message]:
        """Every message, oldest first."""
        return builtins.list(self.iter(session_id))

    def last(self, session_id: str, n: int) -> builtins.list[Message]:
        """The latest ``n`` messages, oldest first (one request up to 1000)."""
        if n <= 0:
            return []
        page = self._client.send(Calls.message_last(session_id, min(n, MAX_LAST)))
        messages: builtins.list[Message] = builtins.list(page["results"])
        while len(messages) < n and page.get("previous"):
            page = self.page(page["previous"])
            messages[:0] = page["results"]
        return messages[-n:]

    def pop(
        self,
        session_id: str,
        *,
        count: int = 1,
        expected_revision: int | None = None,
        idempotency_key: str | None = None,
    ) -> PopResult:
        """Remove the newest ``count`` messages; they come back oldest first."""
        return self._client.send(
            Calls.message_pop(
                session_id, count=count, expected_revision=expected_revision, idempotency_key=idempotency_key
            )
        )

    def clear(
        self, session_id: str, *, expected_revision: int | None = None, idempotency_key: str | None = None
    ) -> ClearResult:
        """Remove every message (``removed``, ``revision``)."""
        return self._client.send(
            Calls.message_clear(session_id, expected_revision=expected_revision, idempotency_key=idempotency_key)
        )


# --- asyncio -----------------------------------------------------------------------------------


async def run_to_outcome(awaitable: Awaitable[_T]) -> _T:
    """Await ``awaitable`` in its own task, to its end even if the caller is cancelled meanwhile
    (then the cancellation is raised after it), as the Agents SDK's own sessions do."""
    task = asyncio.ensure_future(awaitable)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved, so an error is not reported as never retrieved
        raise cancelled
    return task.result()


class AsyncClient(_Config):
    """The asyncio client: ``AsyncClient(base_url, api_key)``; ``.sessions`` and ``.messages``.

    Usable from several event loops in turn (``Runner.run_sync`` and ``asyncio.run`` each make
    one): each loop gets its own connection pool.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, retry=retry, headers=headers)
        # A pool's connections belong to the loop that opened them: one pool per live loop.
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self.sessions = AsyncSessions(self)
        self.messages = AsyncMessages(self)

    def to_sync(self) -> Client:
        """A blocking ``Client`` with the same service, key and policies."""
        return Client(self.base_url, self.api_key, headers=self.default_headers, **self._settings())

    def _pool(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = httpx.AsyncClient(base_url=self.api_root, headers=self.default_headers, timeout=self.timeout)
            self._pools[loop] = pool
        return pool

    async def aclose(self) -> None:
        """Close the running loop's connections (other loops' go with their loops)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(self, call: Call) -> Any:
        """One logical request; a mutation runs to its outcome even if the caller is cancelled."""
        if call.idempotency_key is not None:
            return await run_to_outcome(self._attempts(call))
        return await self._attempts(call)

    async def _attempts(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._pool().request(
                    call.method, call.path, params=call.params, content=call.content, headers=call.headers()
                )
            except _NO_RETRY_TRANSPORT:
                raise
            except httpx.TransportError as exc:
                wait = retry_wait(self.retry, attempt, None)
                if wait is None:
                    raise _transport_error(call, exc, attempt) from exc
                await asyncio.sleep(wait)
                continue
            try:
                return raise_for(response.status_code, response.content, response.headers)
            except PlatformError as error:
                wait = retry_wait(self.retry, attempt, error)
                if wait is None:
                    raise
                await asyncio.sleep(wait)


class AsyncSessions:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        agent_id: str,
        title: str,
        *,
        context: Mapping[str, Any] | None = _UNSET,
        metadata: Mapping[str, Any] | None = _UNSET,
        expires_at: Any = _UNSET,
        external_id: str | None = _UNSET,
        idle_expiry: bool = _UNSET,
        idempotency_key: str | None = None,
    ) -> Session:
        """A new session (``idle_expiry=False``: never completed for being idle; see the README)."""
        return await self._client.send(
            Calls.session_create(
                agent_id=agent_id,
                title=title,
                context=context,
                metadata=metadata,
                expires_at=expires_at,
                external_id=external_id,
                idle_expiry=idle_expiry,
                idempotency_key=idempotency_key,
            )
        )

    async def get(self, session_id: str) -> Session:
        return await self._client.send(Calls.session_get(session_id))

    async def list(
        self,
        *,
        status: str | None = None,
        agent_id: str | None = None,
        external_id: str | None = None,
        search: str | None = None,
        ordering: str | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> SessionPage:
        return await self._client.send(
            Calls.session_list(
                status=status,
                agent_id=agent_id,
                external_id=external_id,
                search=search,
                ordering=ordering,
                page=page,
                page_size=page_size,
            )
        )

    async def iter(self, **filters: Any) -> AsyncIterator[Session]:
        page = await self.list(**filters)
        for session in page["results"]:
            yield session
        while link := page.get("next"):
            page = await self._client.send(Calls.page(link))
            for session in page["results"]:
                yield session

    async def find(self, *, agent_id: str, external_id: str) -> Session | None:
        results = (await self.list(agent_id=agent_id, external_id=external_id))["results"]
        return results[0] if results else None

    async def update(
        self,
        session_id: str,
        *,
        title: str = _UNSET,
        context: Mapping[str, Any] = _UNSET,
        metadata: Mapping[str, Any] = _UNSET,
        idempotency_key: str | None = None,
    ) -> Session:
        return await self._client.send(
            Calls.session_update(
                session_id, title=title, context=context, metadata=metadata, idempotency_key=idempotency_key
            )
        )

    async def delete(self, session_id: str, *, idempotency_key: str | None = None) -> None:
        await self._client.send(Calls.session_delete(session_id, idempotency_key=idempotency_key))

    async def complete(self, session_id: str, *, reason: str = "", idempotency_key: str | None = None) -> Session:
        return await self._client.send(
            Calls.session_action(session_id, "complete", {"reason": reason}, idempotency_key=idempotency_key)
        )

    async def fail(self, session_id: str, *, error: str = "", idempotency_key: str | None = None) -> Session:
        return await self._client.send(
            Calls.session_action(session_id, "fail", {"error": error}, idempotency_key=idempotency_key)
        )

    async def cancel(self, session_id: str, *, reason: str = "", idempotency_key: str | None = None) -> Session:
        return await self._client.send(
            Calls.session_action(session_id, "cancel", {"reason": reason}, idempotency_key=idempotency_key)
        )

    async def transfer(self, session_id: str, *, user: str, idempotency_key: str | None = None) -> Session:
        """Move a session to another user (a platform admin's key)."""
        return await self._client.send(
            Calls.session_action(session_id, "transfer", {"user": str(user)}, idempotency_key=idempotency_key)
        )


class AsyncMessages:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def append(
        self,
        session_id: str,
        *,
        role: str | None = None,
        content: str | None = None,
        item: Mapping[str, Any] | None = None,
        kind: str | None = None,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        metadata: Mapping[str, Any] | None = None,
        token_count: int | None = None,
        expected_revision: int | None = None,
        state_delta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        body = message_body(
            role=role,
            content=content,
            item=item,
            kind=kind,
            tool_calls=tool_calls,
            metadata=metadata,
            token_count=token_count,
        )
        if expected_revision is not None:
            body["expected_revision"] = expected_revision
        if state_delta is not None:
            body["state_delta"] = dict(state_delta)
        return await self._client.send(Calls.message_append(session_id, body, idempotency_key=idempotency_key))

    async def append_batch(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        expected_revision: int | None = None,
        state_delta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> BatchResult:
        return await self._client.send(
            Calls.message_append_batch(
                session_id,
                messages,
                expected_revision=expected_revision,
                state_delta=state_delta,
                idempotency_key=idempotency_key,
            )
        )

    async def list(self, session_id: str, *, page_size: int | None = None, cursor: str | None = None) -> MessagePage:
        return await self._client.send(Calls.message_list(session_id, page_size=page_size, cursor=cursor))

    async def page(self, url: str) -> MessagePage:
        return await self._client.send(Calls.page(url))

    async def iter(self, session_id: str, *, page_size: int = MAX_PAGE) -> AsyncIterator[Message]:
        page = await self.list(session_id, page_size=page_size)
        for message in page["results"]:
            yield message
        while link := page.get("next"):
            page = await self.page(link)
            for message in page["results"]:
                yield message

    async def all(self, session_id: str) -> builtins.list[Message]:
        """Every message, oldest first."""
        return [message async for message in self.iter(session_id)]

    async def last(self, session_id: str, n: int) -> builtins.list[Message]:
        if n <= 0:
            return []
        page = await self._client.send(Calls.message_last(session_id, min(n, MAX_LAST)))
        messages: builtins.list[Message] = builtins.list(page["results"])
        while len(messages) < n and page.get("previous"):
            page = await self.page(page["previous"])
            messages[:0] = page["results"]
        return messages[-n:]

    async def pop(
        self,
        session_id: str,
        *,
        count: int = 1,
        expected_revision: int | None = None,
        idempotency_key: str | None = None,
    ) -> PopResult:
        return await self._client.send(
            Calls.message_pop(
                session_id, count=count, expected_revision=expected_revision, idempotency_key=idempotency_key
            )
        )

    async def clear(
        self, session_id: str, *, expected_revision: int | None = None, idempotency_key: str | None = None
    ) -> ClearResult:
        return await self._client.send(
            Calls.message_clear(session_id, expected_revision=expected_revision, idempotency_key=idempotency_key)
        )
