"""Each identity provider's signing keys: its discovery document's ``jwks_uri``, fetched once
and kept, so validating a token costs no network call.

- In this process: a token signed with a key we hold is checked without any I/O.
- In the shared cache (the database cache, or Redis with REDIS_URL): a worker that starts while
  the provider is unreachable uses the last key set any worker fetched.
- A ``kid`` we do not hold (the provider rotated its keys, or the token is forged) makes at most
  one refetch per issuer per REFETCH_INTERVAL, across all workers (a claim in the shared cache)
  and within each one; the tokens in between are refused without touching the network.
- A key set older than MAX_AGE is refreshed on the next token, so keys the provider withdrew
  stop working; if that refresh fails, the last good set keeps working.
- Nothing held anywhere and the provider unreachable: ``ProviderUnavailable`` (the API answers
  503 with Retry-After); the next attempt to reach it is at most once per COLD_RETRY seconds.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests
from django.core.cache import cache

from config.identity_providers import IdentityProvider

logger = logging.getLogger(__name__)

# The asymmetric algorithms we accept at all; a provider narrows them to what it publishes.
ALGORITHMS = frozenset({"RS256", "ES256"})
REFETCH_INTERVAL = 60.0
MAX_AGE = 3600.0
COLD_RETRY = 10.0
# (connect, read) seconds for the discovery document and the key set.
HTTP_TIMEOUT = (3.05, 5.0)
SHARED_TTL = 7 * 86400
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ProviderUnavailable(Exception):
    """The provider's keys cannot be fetched and none were ever held."""

    def __init__(self, issuer: str, retry_after: int) -> None:
        super().__init__(f"identity provider {issuer} is unreachable")
        self.issuer = issuer
        self.retry_after = retry_after


class FetchFailed(Exception):
    pass


@dataclass(frozen=True)
class KeySet:
    keys: Mapping[str, jwt.PyJWK]  # by kid ("" for a key published without one)
    algorithms: frozenset[str]
    fetched_at: float  # epoch seconds
    published: tuple[Mapping[str, Any], ...] = ()  # the JWKs as fetched (public keys only)

    def key_for(self, kid: str | None) -> jwt.PyJWK | None:
        if kid:
            return self.keys.get(kid)
        # A token without a kid is allowed only while the set holds one key (OIDC Core 10.1).
        return next(iter(self.keys.values())) if len(self.keys) == 1 else None

    @property
    def is_stale(self) -> bool:
        return time.time() - self.fetched_at > MAX_AGE


@dataclass
class _IssuerState:
    key_set: KeySet | None = None
    last_attempt: float | None = None  # time.monotonic() of the last cold fetch
    last_refetch: float | None = None  # ... and of the last refetch (unknown kid, old set)
    lock: threading.Lock = field(default_factory=threading.Lock)


_states: dict[str, _IssuerState] = {}
_states_lock = threading.Lock()


def _state(issuer: str) -> _IssuerState:
    state = _states.get(issuer)
    if state is None:
        with _states_lock:
            state = _states.setdefault(issuer, _IssuerState())
    return state


def key_set_for(provider: IdentityProvider, kid: str | None) -> KeySet:
    """The provider's keys, refreshed when ``kid`` is unknown or the set is old (both rate
    limited). Raises ProviderUnavailable when none can be had."""
    state = _state(provider.issuer)
    current = state.key_set
    if current is not None and current.key_for(kid) is not None and not current.is_stale:
        return current  # the hot path: no lock, no I/O
    with state.lock:
        current = state.key_set
        if current is None:
            current = state.key_set = _shared_get(provider)
        if current is None:
            return _cold_fetch(provider, state)
        if current.key_for(kid) is None or current.is_stale:
            current = _refetch(provider, state, current) or current
        return current


def _cold_fetch(provider: IdentityProvider, state: _IssuerState) -> KeySet:
    now = time.monotonic()
    if state.last_attempt is not None and now - state.last_attempt < COLD_RETRY:
        raise ProviderUnavailable(provider.issuer, max(1, math.ceil(state.last_attempt + COLD_RETRY - now)))
    state.last_attempt = now
    try:
        fresh = _fetch(provider)
    except FetchFailed as exc:
        logger.warning("identity provider keys unavailable", extra={"issuer": provider.issuer, "reason": str(exc)})
        raise ProviderUnavailable(provider.issuer, math.ceil(COLD_RETRY)) from None
    state.key_set = fresh
    _shared_set(provider, fresh)
    return fresh


def _refetch(provider: IdentityProvider, state: _IssuerState, current: KeySet) -> KeySet | None:
    now = time.monotonic()
    if state.last_refetch is not None and now - state.last_refetch < REFETCH_INTERVAL:
        return None
    state.last_refetch = now
    if not _claim_refetch(provider):
        # Another worker refetched within the interval: take its set if it is newer.
        shared = _shared_get(provider)
        if shared is not None and shared.fetched_at > current.fetched_at:
            state.key_set = shared
            return shared
        return None
    try:
        fresh = _fetch(provider)
    except FetchFailed as exc:
        logger.warning("identity provider keys not refreshed", extra={"issuer": provider.issuer, "reason": str(exc)})
        return None
    state.key_set = fresh
    _shared_set(provider, fresh)
    return fresh


# --- the network ------------------------------------------------------------------------------


def _get_json(url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)):
        raise FetchFailed(f"refusing a non-https URL {url!r}")
    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise FetchFailed(f"{url}: {type(exc).__name__}") from None
    if not isinstance(document, dict):
        raise FetchFailed(f"{url}: not a JSON object")
    return document


def _fetch(provider: IdentityProvider) -> KeySet:
    discovery = _get_json(provider.discovery_url)
    if discovery.get("issuer") != provider.issuer:
        raise FetchFailed("the discovery document names another issuer")
    jwks_uri = discovery.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise FetchFailed("the discovery document has no jwks_uri")
    published = discovery.get("id_token_signing_alg_values_supported")
    algorithms = ALGORITHMS & set(published) if isinstance(published, list) and published else ALGORITHMS
    jwks = _get_json(jwks_uri)
    key_set = _parse(jwks, frozenset(algorithms), time.time())
    if not key_set.keys:
        raise FetchFailed("the key set holds no usable RS256/ES256 signing key")
    logger.info("identity provider keys fetched", extra={"issuer": provider.issuer, "keys": len(key_set.keys)})
    return key_set


def _parse(jwks: Mapping[str, Any], algorithms: frozenset[str], fetched_at: float) -> KeySet:
    keys: dict[str, jwt.PyJWK] = {}
    published: list[Mapping[str, Any]] = []
    for entry in jwks.get("keys") or []:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC"):
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue  # a key type or curve we do not verify with
        if key.algorithm_name in algorithms:
            keys[str(entry.get("kid") or "")] = key
            published.append(entry)
    return KeySet(keys=keys, algorithms=algorithms, fetched_at=fetched_at, published=tuple(published))


# --- the shared cache -------------------------------------------------------------------------


def _cache_key(provider: IdentityProvider, what: str) -> str:
    return f"oidc-{what}:{hashlib.sha256(provider.issuer.encode()).hexdigest()[:32]}"


def _shared_get(provider: IdentityProvider) -> KeySet | None:
    try:
        stored = cache.get(_cache_key(provider, "jwks"))
    except Exception:  # the cache is down: as if it held nothing
        return None
    if not isinstance(stored, dict):
        return None
    try:
        key_set = _parse(stored["jwks"], frozenset(stored["algorithms"]), float(stored["fetched_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    return key_set if key_set.keys else None


def _shared_set(provider: IdentityProvider, key_set: KeySet) -> None:
    document = {"keys": [dict(entry) for entry in key_set.published]}
    value = {"jwks": document, "algorithms": sorted(key_set.algorithms), "fetched_at": key_set.fetched_at}
    try:
        cache.set(_cache_key(provider, "jwks"), value, timeout=SHARED_TTL)
    except Exception:
        logger.warning("identity provider keys not shared: the cache is unavailable")


def _claim_refetch(provider: IdentityProvider) -> bool:
    """One refetch per issuer per REFETCH_INTERVAL across every worker (the cache is down: go)."""
    try:
        return bool(cache.add(_cache_key(provider, "refetch"), 1, timeout=math.ceil(REFETCH_INTERVAL)))
    except Exception:
        return True
