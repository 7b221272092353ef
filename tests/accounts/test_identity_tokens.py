"""API bearer tokens of identity providers, over HTTP (the live server) against real OpenID
providers (oidc-provider-mock on loopback ports) configured as Azure AD, Cognito and a generic
issuer. Every token that is accepted was signed by a provider; hand-made ones are only the
attacks (alg none, HS256 with the public key, a foreign key or kid, tampering)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache

from accounts.models import User
from accounts.oidc import keys
from audit.models import AuditLog
from config.identity_providers import identity_providers_from
from tests.oidc_provider import AZURE_CLIENT_ID, AZURE_TENANT, COGNITO_CLIENT_ID, MockProvider, Providers, provider_env

pytestmark = pytest.mark.django_db(transaction=True)


def call(live_server: Any, token: str, path: str = "users/me/", method: str = "GET", **kwargs: Any):
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{live_server.url}/api/v1/{path}", headers=headers, timeout=15, **kwargs)


def refused(response: requests.Response, code: str, token: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["code"] == code, body
    assert token not in response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload)), signature


def forge(header: dict[str, Any], payload: dict[str, Any], signature: str = "") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{signature}"


def published_key(provider: MockProvider) -> dict[str, Any]:
    return requests.get(f"{provider.issuer}/jwks", timeout=10).json()["keys"][0]


def audit_rows(**filters: Any) -> list[AuditLog]:
    return list(AuditLog.objects.filter(**filters).order_by("timestamp"))


# --- accepted tokens: each provider's claim shapes, provisioning ------------------------------


def test_an_azure_token_provisions_its_user_by_oid_and_reads_their_data(live_server, providers: Providers):
    oid = str(uuid.uuid4())
    token = providers.azure_token(
        oid, email="dana@contoso.example", name="Dana", roles=["Developer", "unknown-role"], groups=["g-1", "g-2"]
    )

    response = call(live_server, token)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["email"], body["name"], body["provider"]) == ("dana@contoso.example", "Dana", "azure_ad")
    user = User.objects.get(provider="azure_ad", provider_user_id=oid)
    assert (user.roles, user.groups, user.is_staff) == (["developer"], ["g-1", "g-2"], True)
    assert not user.has_usable_password()
    [created] = audit_rows(action="CREATE", resource_id=str(user.pk))
    assert created.user_id is None and created.metadata["actor"] == "system:oidc"
    assert created.request_path == "/api/v1/users/me/"
    assert token not in json.dumps([created.changes, created.metadata])


def test_azure_accepts_the_client_id_and_the_api_uri_as_audience(live_server, providers):
    assert call(live_server, providers.azure_token(aud=AZURE_CLIENT_ID)).status_code == 200
    assert call(live_server, providers.azure_token(aud=f"api://{AZURE_CLIENT_ID}")).status_code == 200
    refused(
        call(live_server, token := providers.azure_token(aud="api://someone-else")), "token_invalid_audience", token
    )


def test_a_cognito_id_token_maps_groups_to_roles(live_server, providers):
    sub = str(uuid.uuid4())
    token = providers.cognito_id_token(sub, email="erin@cognito.example", **{"cognito:groups": ["Admins", "eng"]})

    response = call(live_server, token, "users/")  # admin endpoint: the admin role came from the group

    assert response.status_code == 200, response.text
    user = User.objects.get(provider="aws_cognito", provider_user_id=sub)
    assert (user.email, user.name, user.roles, user.groups) == (
        "erin@cognito.example",
        f"user-{sub[:8]}",
        ["admin"],
        ["Admins", "eng"],
    )
    assert user.is_staff


def test_a_cognito_access_token_is_checked_by_client_id_and_finds_the_user(live_server, providers):
    sub = str(uuid.uuid4())
    assert call(live_server, providers.cognito_id_token(sub)).status_code == 200  # the first sign-in

    token = providers.cognito_access_token(sub, **{"cognito:groups": ["eng"]})
    assert parts(token)[1]["aud"] is None and "email" not in parts(token)[1]
    response = call(live_server, token)

    assert response.status_code == 200, response.text
    assert response.json()["provider_user_id"] == sub


def test_a_cognito_access_token_of_an_unknown_user_cannot_provision_without_an_email(live_server, providers):
    token = providers.cognito_access_token()
    refused(call(live_server, token), "token_missing_claim", token)
    assert not User.objects.filter(provider="aws_cognito").exists()


def test_a_generic_issuers_token_provisions_an_oidc_user(live_server, providers):
    sub = str(uuid.uuid4())
    response = call(live_server, providers.generic_token(sub, roles=["viewer"], groups=["Readers"]))
    assert response.status_code == 200, response.text
    user = User.objects.get(provider="oidc", provider_user_id=sub)
    assert (user.roles, user.groups, user.is_staff) == (["viewer"], ["Readers"], True)


def test_repeated_requests_write_nothing_and_make_no_network_call(live_server, providers):
    token = providers.azure_token()
    assert call(live_server, token).status_code == 200
    user = User.objects.get(provider="azure_ad")
    before = (user.updated_at, AuditLog.objects.count(), dict(providers.azure.hits))

    for _ in range(5):
        assert call(live_server, token).status_code == 200

    user.refresh_from_db()
    assert (user.updated_at, AuditLog.objects.count(), dict(providers.azure.hits)) == before


# --- claim sync ------------------------------------------------------------------------------


def test_changed_claims_update_the_user_at_most_once_per_sync_period(live_server, providers, settings):
    settings.OIDC_SYNC_SECONDS = 1
    oid = str(uuid.uuid4())
    assert call(live_server, providers.azure_token(oid, name="Old", groups=["a"])).status_code == 200
    user = User.objects.get(provider_user_id=oid)
    time.sleep(2.1)  # the provisioning opened a sync period; let it pass (the cache counts whole seconds)

    assert (
        call(live_server, providers.azure_token(oid, name="New", groups=["a", "b"], roles=["admin"])).status_code == 200
    )
    user.refresh_from_db()
    assert (user.name, user.groups, user.roles, user.is_staff) == ("New", ["a", "b"], ["admin"], True)
    [update] = audit_rows(action="UPDATE", resource_id=str(user.pk))
    assert update.metadata["actor"] == "system:oidc" and update.user_id is None
    assert update.changes["name"] == {"old": "Old", "new": "New"}
    assert update.changes["roles"] == {"old": [], "new": ["admin"]}

    # Within the period another change waits (an old and a new token must not flap the row).
    assert (
        call(live_server, providers.azure_token(oid, name="Newer", groups=["a", "b"], roles=["admin"])).status_code
        == 200
    )
    user.refresh_from_db()
    assert user.name == "New"
    time.sleep(2.1)
    assert (
        call(live_server, providers.azure_token(oid, name="Newer", groups=["a", "b"], roles=["admin"])).status_code
        == 200
    )
    user.refresh_from_db()
    assert user.name == "Newer"
    assert len(audit_rows(action="UPDATE", resource_id=str(user.pk))) == 2


def test_an_email_another_account_holds_is_not_synced(live_server, providers, settings, alice):
    settings.OIDC_SYNC_SECONDS = 1
    oid = str(uuid.uuid4())
    assert call(live_server, providers.azure_token(oid, email="mine@contoso.example")).status_code == 200
    time.sleep(2.1)
    response = call(live_server, providers.azure_token(oid, email="alice@example.com", name="Renamed"))
    assert response.status_code == 200
    user = User.objects.get(provider_user_id=oid)
    assert (user.email, user.name) == ("mine@contoso.example", "Renamed")


# --- who the token reaches -------------------------------------------------------------------


def test_without_auto_provisioning_an_unknown_user_is_refused(live_server, providers, settings):
    settings.OIDC_AUTO_PROVISION = False
    token = providers.azure_token()
    refused(call(live_server, token), "token_user_unknown", token)
    assert not User.objects.filter(provider="azure_ad").exists()


def test_an_inactive_user_is_refused(live_server, providers, make_user):
    oid = str(uuid.uuid4())
    user = make_user(provider="azure_ad", provider_user_id=oid, is_active=False)
    token = providers.azure_token(oid)
    refused(call(live_server, token), "token_user_inactive", token)
    [row] = audit_rows(action="FAILED_AUTH", user_id=user.pk)
    assert row.metadata == {"reason": "token_user_inactive", "provider": "azure_ad", "credential": "identity_token"}


def test_a_soft_deleted_user_is_refused_and_never_provisioned_again(live_server, providers, make_user):
    from accounts.services import user_soft_delete

    sub = str(uuid.uuid4())
    user = make_user(provider="oidc", provider_user_id=sub)
    user_soft_delete(actor=None, user=user)
    token = providers.generic_token(sub)

    refused(call(live_server, token), "token_user_deleted", token)
    assert User.all_objects.filter(provider="oidc", provider_user_id=sub).count() == 1


def test_a_local_user_cannot_be_reached_by_a_token(live_server, providers, alice):
    # Same email, and the local user's own id as the subject: still not alice (never by email).
    token = providers.generic_token(alice.user.provider_user_id, email="alice@example.com")
    refused(call(live_server, token), "token_user_conflict", token)
    token = providers.azure_token(str(alice.user.pk), email="alice@example.com")
    refused(call(live_server, token), "token_user_conflict", token)
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1
    assert User.objects.get(email="alice@example.com").provider == "local"


def test_users_of_two_providers_with_the_same_subject_are_two_users(live_server, providers):
    sub = str(uuid.uuid4())
    assert call(live_server, providers.generic_token(sub)).json()["provider"] == "oidc"
    assert call(live_server, providers.cognito_id_token(sub)).json()["provider"] == "aws_cognito"
    assert User.objects.filter(provider_user_id=sub).count() == 2


def test_two_first_requests_at_once_make_one_user(live_server, providers):
    oid = str(uuid.uuid4())
    token = providers.azure_token(oid)
    results: list[int] = []

    def first() -> None:
        results.append(call(live_server, token).status_code)

    threads = [threading.Thread(target=first) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [200] * 4
    user = User.objects.get(provider_user_id=oid)
    assert len(audit_rows(action="CREATE", resource_id=str(user.pk))) == 1


# --- what a token may do ---------------------------------------------------------------------


def test_a_token_reads_and_writes_its_own_data_but_is_no_admin(live_server, providers):
    token = providers.generic_token()
    created = call(live_server, token, "sessions/", "POST", json={"agent_id": "agent", "title": "mine"})
    assert created.status_code == 201, created.text
    assert call(live_server, token, f"sessions/{created.json()['id']}/").status_code == 200
    assert call(live_server, token, "users/").status_code == 403
    assert call(live_server, token, "audit-logs/").status_code == 403


def test_bob_cannot_see_alices_session_with_his_token(live_server, providers):
    alice_token, bob_token = providers.generic_token(), providers.generic_token()
    session = call(live_server, alice_token, "sessions/", "POST", json={"agent_id": "a", "title": "alice's"}).json()
    assert call(live_server, bob_token, f"sessions/{session['id']}/").status_code == 404
    assert call(live_server, bob_token, "sessions/").json()["results"] == []


def test_an_admin_roles_token_may_use_the_admin_endpoints(live_server, providers):
    token = providers.azure_token(roles=["super_admin"])
    assert call(live_server, token, "users/").status_code == 200
    assert call(live_server, token, "audit-logs/").status_code == 200


def test_token_requests_count_per_user_at_the_configured_tier(live_server, providers, settings):
    cache.clear()  # rate counters outlive transactional tests
    settings.OIDC_RATE_LIMIT_TIER = "free"
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "free": "3/hour"}
    sub = str(uuid.uuid4())
    first, second = providers.generic_token(sub), providers.generic_token(sub, name="Again")
    statuses = [call(live_server, token).status_code for token in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]


def test_x_api_key_carries_api_keys_only(live_server, providers):
    token = providers.azure_token()
    response = requests.get(f"{live_server.url}/api/v1/users/me/", headers={"X-API-Key": token}, timeout=10)
    assert response.status_code == 401 and response.json()["detail"] == "Malformed API key."


def test_an_api_key_as_bearer_is_still_an_api_key(live_server, providers, alice):
    response = call(live_server, alice.raw_key)
    assert response.status_code == 200 and response.json()["email"] == "alice@example.com"


# --- refused tokens: every check names itself ------------------------------------------------


def test_alg_none_is_refused(live_server, providers):
    _, payload, _ = parts(providers.azure_token())
    token = forge({"alg": "none", "typ": "JWT"}, payload)
    refused(call(live_server, token), "token_algorithm_not_allowed", token)


def test_hs256_signed_with_the_providers_public_key_is_refused(live_server, providers):
    _, payload, _ = parts(providers.azure_token())
    public = jwt.PyJWK(published_key(providers.azure)).key
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    token = f"{signing_input}.{signature}"
    refused(call(live_server, token), "token_algorithm_not_allowed", token)


def test_a_kid_of_another_issuer_is_an_unknown_key(live_server, providers):
    _, payload, _ = parts(providers.azure_token())
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(payload, foreign, algorithm="RS256", headers={"kid": published_key(providers.cognito)["kid"]})
    refused(call(live_server, token), "token_unknown_key", token)


def test_a_token_signed_by_another_issuer_claiming_ours_does_not_verify(live_server, providers):
    # Signed by the Cognito provider's own key, claiming the Azure issuer and tenant.
    token = providers.cognito.id_token(
        "mallory",
        {"iss": providers.azure.issuer, "oid": str(uuid.uuid4()), "tid": AZURE_TENANT, "email": "m@x.example"},
        client_id=AZURE_CLIENT_ID,
    )
    refused(call(live_server, token), "token_invalid_signature", token)


def test_a_tampered_payload_or_signature_is_refused(live_server, providers):
    token = providers.azure_token(roles=["viewer"])
    header, payload, signature = token.split(".")
    claims = json.loads(unb64(payload))
    claims["roles"] = ["super_admin"]
    tampered = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    refused(call(live_server, tampered), "token_invalid_signature", tampered)
    flipped = f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    refused(call(live_server, flipped), "token_invalid_signature", flipped)
    assert not User.objects.filter(roles__contains=["super_admin"]).exists()


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"exp": -61}, "token_expired"),
        ({"nbf": 120}, "token_not_yet_valid"),
        ({"iat": 120}, "token_issued_in_future"),
    ],
)
def test_time_claims_beyond_sixty_seconds_of_leeway_are_refused(live_server, providers, claims, code):
    now = int(time.time())
    token = providers.azure_token(**{name: now + offset for name, offset in claims.items()})
    refused(call(live_server, token), code, token)


def test_time_claims_within_the_leeway_are_accepted(live_server, providers):
    now = int(time.time())
    assert call(live_server, providers.azure_token(exp=now - 30)).status_code == 200
    assert call(live_server, providers.azure_token(nbf=now + 30, iat=now + 30)).status_code == 200


def test_an_issuer_that_is_not_configured_exactly_is_refused(live_server, providers):
    token = providers.azure_token(iss=providers.azure.issuer + "/")
    refused(call(live_server, token), "token_invalid_issuer", token)


def test_azure_tokens_of_another_tenant_or_without_oid_are_refused(live_server, providers):
    token = providers.azure_token(tid=str(uuid.uuid4()))
    refused(call(live_server, token), "token_invalid_tenant", token)
    token = providers.azure.id_token(
        "no-oid", {"tid": AZURE_TENANT, "email": "x@contoso.example"}, client_id=AZURE_CLIENT_ID
    )
    refused(call(live_server, token), "token_missing_claim", token)


def test_cognito_token_use_and_client_rules(live_server, providers):
    cases = [
        (providers.cognito_id_token(token_use=None), "token_invalid_token_use"),
        (providers.cognito_id_token(token_use="refresh"), "token_invalid_token_use"),
        (providers.cognito_id_token(aud="another-app-client"), "token_invalid_audience"),
        (providers.cognito_access_token(client_id="another-app-client"), "token_invalid_client_id"),
        # An access token is judged by client_id: an ID token's audience does not make it valid.
        (providers.cognito_access_token(client_id=None, aud=COGNITO_CLIENT_ID), "token_invalid_client_id"),
        # And an ID token by aud: a client_id claim does not either.
        (providers.cognito_id_token(aud="another-app-client", client_id=COGNITO_CLIENT_ID), "token_invalid_audience"),
    ]
    for token, code in cases:
        refused(call(live_server, token), code, token)


def test_a_malformed_jwt_is_refused(live_server, providers):
    token = "eyJhbGciOiJSUzI1NiJ9.bm90LWpzb24.c2ln"
    refused(call(live_server, token), "token_malformed", token)


def test_failures_are_audited_without_the_token_and_count_toward_the_failure_rate(
    live_server, providers, settings, caplog
):
    caplog.set_level("INFO")
    cache.clear()  # rate counters outlive transactional tests
    settings.AUTH_FAILURE_RATE = "3/hour"
    token = providers.azure_token(exp=int(time.time()) - 600)
    statuses = [call(live_server, token).status_code for _ in range(4)]

    assert statuses == [401, 401, 401, 429]
    rows = audit_rows(action="FAILED_AUTH")
    assert [r.metadata["reason"] for r in rows] == ["token_expired"] * 3
    assert all(r.response_status == 401 and r.ip_address == "127.0.0.1" for r in rows)
    stored = json.dumps([[r.changes, r.metadata, r.request_path] for r in rows])
    assert token not in stored and token.split(".")[2] not in stored
    assert "identity token refused" in caplog.text  # the log says why, never with the token
    assert token.split(".")[2] not in caplog.text


# --- the provider's keys: cached, refetched rarely, kept while it is down ----------------------


@pytest.fixture
def lone_provider(settings) -> Any:
    """A provider of its own (a fresh issuer: nothing of it cached), configured as the generic one."""
    provider = MockProvider().start()
    settings.IDENTITY_PROVIDERS = identity_providers_from(provider_env(generic=provider))
    settings.AUTH_FAILURE_RATE = "none"
    yield provider
    provider.stop()


def generic_token(provider: MockProvider, sub: str | None = None) -> str:
    sub = sub or str(uuid.uuid4())
    return provider.id_token(sub, {"email": f"{sub[:8]}@sso.example"}, client_id="agent-platform")


def test_keys_are_fetched_once_and_an_unknown_kid_refetches_at_most_once_a_minute(
    live_server, lone_provider, monkeypatch
):
    assert keys.REFETCH_INTERVAL == 60
    monkeypatch.setattr(keys, "REFETCH_INTERVAL", 3.0)  # a minute, shortened for the test
    token = generic_token(lone_provider)
    assert call(live_server, token).status_code == 200
    assert (lone_provider.hits["/.well-known/openid-configuration"], lone_provider.hits["/jwks"]) == (1, 1)

    _, payload, _ = parts(token)
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for n in range(5):
        forged = jwt.encode(payload, foreign, algorithm="RS256", headers={"kid": f"rotated-{n}"})
        refused(call(live_server, forged), "token_unknown_key", forged)
    assert lone_provider.hits["/jwks"] == 2  # one refetch for five unknown kids
    assert call(live_server, token).status_code == 200

    time.sleep(4.1)  # past the interval, and the shared claim's timeout (whole seconds)
    refused(call(live_server, forged), "token_unknown_key", forged)
    assert lone_provider.hits["/jwks"] == 3


def test_cached_keys_keep_working_while_the_provider_is_down(live_server, lone_provider):
    token = generic_token(lone_provider)
    assert call(live_server, token).status_code == 200
    lone_provider.stop()

    assert call(live_server, token).status_code == 200
    # A new user's token too: provisioning needs no provider.
    other = generic_token(lone_provider.start())
    lone_provider.stop()
    assert call(live_server, other).status_code == 200


def test_a_cold_start_with_the_provider_down_answers_503_then_recovers(live_server, lone_provider, monkeypatch):
    token = generic_token(lone_provider)
    lone_provider.stop()

    response = call(live_server, token)
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "identity_provider_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert not User.objects.filter(provider="oidc").exists()
    assert not AuditLog.objects.filter(action="FAILED_AUTH").exists()

    monkeypatch.setattr(keys, "COLD_RETRY", 0.2)
    lone_provider.start()
    time.sleep(0.3)
    assert call(live_server, token).status_code == 200


def test_an_old_key_set_is_refreshed_and_kept_if_the_refresh_fails(live_server, lone_provider, monkeypatch):
    token = generic_token(lone_provider)
    assert call(live_server, token).status_code == 200
    monkeypatch.setattr(keys, "MAX_AGE", 0.0)  # every set is old now
    monkeypatch.setattr(keys, "REFETCH_INTERVAL", 1.0)

    assert call(live_server, token).status_code == 200
    assert lone_provider.hits["/jwks"] == 2  # refreshed
    lone_provider.stop()
    time.sleep(2.1)  # past the interval and the shared claim's timeout
    assert call(live_server, token).status_code == 200  # the refresh failed; the last good set serves
