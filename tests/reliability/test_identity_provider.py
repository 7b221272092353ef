"""Identity-provider tokens through the production server (gunicorn, several worker processes)
while the provider (a real one, oidc-provider-mock on a loopback port) goes away: the keys
any worker fetched serve every worker, even ones started while the provider is down; a
provider never reached is a 503 with Retry-After; an unknown kid is refetched once for all."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.db import connection

from tests.conftest import database_url
from tests.oidc_provider import OIDC_CLIENT_ID, MockProvider, provider_env
from tests.reliability.servers import Gunicorn, http, service_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def provider() -> Iterator[MockProvider]:
    mock = MockProvider().start()
    yield mock
    mock.stop()


def token_for(provider: MockProvider) -> str:
    sub = str(uuid.uuid4())
    return provider.id_token(sub, {"email": f"{sub[:8]}@sso.example"}, client_id=OIDC_CLIENT_ID)


def serve(provider: MockProvider) -> Gunicorn:
    env = service_env(
        database_url(connection.settings_dict["NAME"]),
        DB_POOL_SIZE="1",
        OIDC_RATE_LIMIT_TIER="enterprise",
        AUTH_FAILURE_RATE="none",
        **provider_env(generic=provider),
    )
    server = Gunicorn(env, workers=3)
    server.start()
    return server


def stop(server: Gunicorn) -> None:
    output = server.stop()
    cache.clear()  # the shared key set and counters live in the test database's cache table
    assert "Traceback" not in output, output[-5000:]


def me(server: Gunicorn, token: str) -> int:
    return http("GET", f"{server.url}/api/v1/users/me/", key=token).status


def test_every_worker_keeps_serving_tokens_while_the_provider_is_down_even_after_a_restart(provider):
    server = serve(provider)
    try:
        token = token_for(provider)
        assert me(server, token) == 200
        provider.stop()
        # Requests land on all three workers; only one of them ever fetched the keys.
        assert [me(server, token) for _ in range(30)] == [200] * 30
        server.stop()
        server = serve(provider)  # every worker new, the provider still down
        assert [me(server, token) for _ in range(15)] == [200] * 15
    finally:
        stop(server)
    assert provider.hits["/jwks"] == 1


def test_a_provider_never_reached_answers_503_with_retry_after(provider):
    token = token_for(provider)
    provider.stop()
    server = serve(provider)
    try:
        reply = http("GET", f"{server.url}/api/v1/users/me/", key=token)
        assert reply.status == 503, reply.body
        assert reply.json()["code"] == "identity_provider_unavailable"
        assert int(reply.headers["Retry-After"]) >= 1
    finally:
        stop(server)


def test_an_unknown_kid_is_refetched_once_for_all_workers(provider):
    server = serve(provider)
    try:
        token = token_for(provider)
        assert me(server, token) == 200
        payload = jwt.decode(token, options={"verify_signature": False})
        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(payload, forger, algorithm="RS256", headers={"kid": "rotated"})
        replies = [http("GET", f"{server.url}/api/v1/users/me/", key=forged) for _ in range(30)]
        assert {r.status for r in replies} == {401}
        assert {r.json()["code"] for r in replies} == {"token_unknown_key"}
        assert me(server, token) == 200
    finally:
        stop(server)
    assert provider.hits["/jwks"] == 2  # the first fetch, and one refetch for 30 unknown kids
