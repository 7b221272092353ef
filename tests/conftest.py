"""The shared cast: alice and bob (ordinary users), an admin, their keys and HTTP clients.

Keys are `enterprise` tier unless a test says otherwise, so no rate counter is in play.
Everything talks to a real PostgreSQL: the embedded one, or the server DATABASE_URL names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import user_create
from apikeys.authentication import forget_recent_keys
from apikeys.models import APIKey
from apikeys.services import api_key_create
from config.identity_providers import identity_providers_from
from config.ratelimit import forget_leases
from tests.oidc_provider import MockProvider, Providers, provider_env

BASE_DIR = Path(__file__).resolve().parent.parent
# The password every staff user of the admin tests logs in with.
PASSWORD = "correct-horse-battery-staple-9"


@dataclass
class Actor:
    user: User
    key: APIKey
    raw_key: str
    client: APIClient


def make_client(raw_key: str | None = None, *, header: str = "bearer") -> APIClient:
    client = APIClient()
    if raw_key is not None:
        if header == "bearer":
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        else:
            client.credentials(HTTP_X_API_KEY=raw_key)
    return client


@pytest.fixture(autouse=True)
def _fresh_key_reuse() -> None:
    """Each test starts with no API key reused from an earlier one (apikeys.authentication) and no
    rate-limit lease taken by an earlier one (config.ratelimit)."""
    forget_recent_keys()
    forget_leases()


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def factory(email: str | None = None, **fields: object) -> User:
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        fields.setdefault("name", email.split("@")[0].title())
        return user_create(actor=None, email=email, **fields)

    return factory


@pytest.fixture
def make_key(db: None) -> Callable[..., tuple[APIKey, str]]:
    def factory(user: User, *, scopes: tuple[str, ...] = ("read", "write"), tier: str = "enterprise", **kw: object):
        return api_key_create(
            actor=None, owner=user, name=kw.pop("name", "test key"), scopes=scopes, rate_limit_tier=tier, **kw
        )

    return factory


def _actor(
    make_user: Callable[..., User], make_key: Callable[..., tuple[APIKey, str]], email: str, **fields: object
) -> Actor:
    scopes = fields.pop("scopes", ("read", "write"))
    user = make_user(email, **fields)
    key, raw = make_key(user, scopes=scopes)
    return Actor(user=user, key=key, raw_key=raw, client=make_client(raw))


@pytest.fixture
def alice(make_user, make_key) -> Actor:
    return _actor(make_user, make_key, "alice@example.com", name="Alice", roles=["user"])


@pytest.fixture
def bob(make_user, make_key) -> Actor:
    return _actor(make_user, make_key, "bob@example.com", name="Bob", roles=["user"])


@pytest.fixture
def admin(make_user, make_key) -> Actor:
    return _actor(
        make_user, make_key, "admin@example.com", name="Admin", roles=["admin"], scopes=("read", "write", "admin")
    )


@pytest.fixture
def anon() -> APIClient:
    return make_client()


# --- staff in the admin ------------------------------------------------------------------------


@pytest.fixture
def make_staff(make_user: Callable[..., User]) -> Callable[..., tuple[User, Client]]:
    """A staff user (roles as given) and a client logged into the admin as them."""

    def factory(email: str | None = None, **fields: Any) -> tuple[User, Client]:
        fields.setdefault("is_staff", True)
        fields.setdefault("password", PASSWORD)
        user = make_user(email, **fields)
        client = Client()
        client.force_login(user)
        return user, client

    return factory


@pytest.fixture
def root(make_staff: Callable[..., tuple[User, Client]]) -> tuple[User, Client]:
    """A superuser and their admin client."""
    return make_staff("root@example.com", name="Root", is_superuser=True, roles=["super_admin"])


@pytest.fixture
def root_client(root: tuple[User, Client]) -> Client:
    return root[1]


def messages_of(response: Any) -> list[str]:
    """The admin's flash messages on a response (Django's messages framework)."""
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- scratch databases and subprocesses ------------------------------------------------------


def _conninfo(dbname: str) -> dict[str, object]:
    params = connection.get_connection_params()
    keep = {k: params[k] for k in ("host", "port", "user", "password") if params.get(k)}
    return {**keep, "dbname": dbname}


def database_url(dbname: str) -> str:
    info = _conninfo(dbname)
    auth = str(info.get("user", "postgres"))
    if info.get("password"):
        auth += f":{info['password']}"
    host = str(info.get("host", ""))
    if host.startswith("/"):
        return f"postgresql://{auth}@/{dbname}?host={host}"
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{auth}@{host}{port}/{dbname}"


@pytest.fixture
def scratch_database(db: None) -> Iterator[Callable[[], str]]:
    """Make empty databases on the test server; return their DATABASE_URLs; drop them after."""
    made: list[str] = []

    def factory() -> str:
        name = f"scratch_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(**_conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return database_url(name)

    yield factory
    with psycopg.connect(**_conninfo("postgres"), autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_manage(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a fresh process (its own settings, its own environment)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=full_env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- identity providers: real OpenID providers on loopback ports (tests/oidc_provider.py) ------


@pytest.fixture(scope="module")
def provider_servers() -> Iterator[Providers]:
    """Three real providers on loopback ports, for a whole test module (each its own key)."""
    with MockProvider() as azure, MockProvider() as cognito, MockProvider() as generic:
        yield Providers(azure=azure, cognito=cognito, generic=generic)


@pytest.fixture
def providers(provider_servers: Providers, settings: Any) -> Providers:
    """The three configured as Azure AD, Cognito and a generic issuer. Failed authentications
    and token requests are not throttled unless a test says so."""
    settings.IDENTITY_PROVIDERS = identity_providers_from(
        provider_env(azure=provider_servers.azure, cognito=provider_servers.cognito, generic=provider_servers.generic)
    )
    settings.AUTH_FAILURE_RATE = "none"
    settings.ADMIN_LOGIN_RATE = "none"
    settings.OIDC_RATE_LIMIT_TIER = "enterprise"
    return provider_servers


# --- read replicas: a private primary and a hot standby streaming from it ----------------------


@pytest.fixture(scope="session")
def streaming_replication() -> Iterator[Any]:
    """A primary and a standby (``pg_basebackup -R``) from the embedded PostgreSQL's binaries on
    free loopback ports, the primary migrated; the same whether or not DATABASE_URL is set."""
    from tests.reliability.servers import StreamingPair, manage, service_env

    pair = StreamingPair()
    try:
        manage("migrate", "--no-input", env=service_env(pair.primary_url))
        pair.start_standby()
        yield pair
    finally:
        pair.destroy()


# Debian's Chromium, for the browser tests of any app.
from tests.browser import browser_page  # noqa: E402,F401


def within_one_window(period: float = 60.0, needed: float = 10.0) -> None:
    """Rate limits count in fixed windows (config.ratelimit: the window is ``now // period``): a
    test that counts a few hits against a per-minute limit fails if a window ends between them.
    With fewer than ``needed`` seconds left in the current window, wait for the next one."""
    import time

    left = period - time.time() % period
    if left < needed:
        time.sleep(left + 0.05)


def redis_counters_or_skip(settings: Any, prefix: str, url: str = "redis://127.0.0.1:6379/14") -> Any:
    """Point the default cache (the rate counters' store) at a real Redis under a key prefix of
    the test's own; the Redis client, or a skip with the reason when no Redis answers."""
    import redis

    server = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        server.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url}: the Redis counter needs a real server (this machine's runs on 6379)")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "KEY_PREFIX": prefix}
    }
    return server
