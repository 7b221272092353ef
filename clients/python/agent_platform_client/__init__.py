"""Python client for the agent platform's sessions and messages API.

``Client(base_url, api_key)`` blocks; ``AsyncClient(base_url, api_key)`` is for asyncio. The
framework adapters live in ``agent_platform_client.openai_agents`` (extra ``openai-agents``) and
``agent_platform_client.langchain`` (extra ``langchain``).
"""

from __future__ import annotations

from agent_platform_client._calls import RetryPolicy
from agent_platform_client.client import AsyncClient, Client
from agent_platform_client.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    MessageLimitReached,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PlatformError,
    RateLimited,
    RevisionMismatch,
    ServerError,
    ServiceUnavailable,
    SessionExists,
    SessionNotActive,
    TransportError,
    UnsupportedMediaType,
)

__all__ = [
    "AsyncClient",
    "AuthenticationFailed",
    "BadRequest",
    "Client",
    "Conflict",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyReused",
    "MessageLimitReached",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PlatformError",
    "RateLimited",
    "RetryPolicy",
    "RevisionMismatch",
    "ServerError",
    "ServiceUnavailable",
    "SessionExists",
    "SessionNotActive",
    "TransportError",
    "UnsupportedMediaType",
]
