"""The admin's sign-in with an identity provider, over HTTP (the live server, a cookie-keeping
client as the browser) through a real provider's login form: the authorization code flow with
PKCE, state and nonce; staff let in, everyone else refused on a page of its own; every outcome
audited."""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse
import uuid
from typing import Any

import pytest
import requests
from django.contrib.sessions.backends.db import SessionStore

from accounts.models import User
from audit.models import AuditLog
from config.identity_providers import identity_providers_from
from tests.oidc_provider import AZURE_CLIENT_ID, AZURE_TENANT, MockProvider, Providers, provider_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def plain_http_cookies(settings: Any) -> None:
    # Plain HTTP on the loopback: the production-default Secure cookies would not be sent back.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False


def start(browser: requests.Session, live_server: Any, provider: str, next_url: str = "") -> requests.Response:
    query = f"?{urllib.parse.urlencode({'next': next_url})}" if next_url else ""
    return browser.get(f"{live_server.url}/admin/sign-in/{provider}/{query}", allow_redirects=False, timeout=15)


def log_in_at_provider(browser: requests.Session, authorize_url: str, sub: str, *, deny: bool = False) -> str:
    """The provider's own login form, as a person fills it; returns where it sends the browser."""
    form = browser.get(authorize_url, timeout=15)
    assert form.status_code == 200 and 'name="sub"' in form.text
    data = {"action": "deny"} if deny else {"sub": sub}
    response = browser.post(authorize_url, data=data, allow_redirects=False, timeout=15)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def sign_in(
    live_server: Any, mock: MockProvider, provider: str, sub: str, claims: dict[str, Any], next_url: str = ""
) -> tuple[requests.Session, requests.Response]:
    mock.set_user(sub, claims)
    browser = requests.Session()
    redirect = start(browser, live_server, provider, next_url)
    assert redirect.status_code == 302, redirect.text
    callback = log_in_at_provider(browser, redirect.headers["Location"], sub)
    return browser, browser.get(callback, allow_redirects=False, timeout=15)


def azure_claims(oid: str, **extra: Any) -> dict[str, Any]:
    return {"oid": oid, "tid": AZURE_TENANT, "email": f"{oid[:8]}@contoso.example", "name": "Staff Member", **extra}


def admin_index(browser: requests.Session, live_server: Any) -> requests.Response:
    return browser.get(f"{live_server.url}/admin/", allow_redirects=False, timeout=15)


def test_the_login_page_offers_each_configured_provider_and_the_password_form(live_server, providers):
    page = requests.get(f"{live_server.url}/admin/login/?next=/admin/audit/", timeout=15).text
    assert 'id="login-form"' in page and 'name="password"' in page
    for key, label in (("azure_ad", "Azure AD"), ("aws_cognito", "Cognito"), ("oidc", "Example SSO")):
        assert f"Sign in with {label}" in page
        assert f'href="/admin/sign-in/{key}/?next=%2Fadmin%2Faudit%2F"' in page


def test_without_providers_the_login_page_has_only_the_password_form(live_server, settings):
    settings.IDENTITY_PROVIDERS = ()
    page = requests.get(f"{live_server.url}/admin/login/", timeout=15).text
    assert 'id="login-form"' in page and "Sign in with" not in page
    assert requests.get(f"{live_server.url}/admin/sign-in/oidc/", timeout=15).status_code == 404


def test_azure_without_a_client_secret_offers_no_sign_in(live_server, provider_servers, settings):
    env = provider_env(azure=provider_servers.azure)
    del env["AZURE_AD_CLIENT_SECRET"]
    settings.IDENTITY_PROVIDERS = identity_providers_from(env)
    assert "Sign in with Azure AD" not in requests.get(f"{live_server.url}/admin/login/", timeout=15).text
    assert requests.get(f"{live_server.url}/admin/sign-in/azure_ad/", timeout=15).status_code == 404


def test_the_redirect_carries_state_nonce_and_an_s256_pkce_challenge(live_server, providers: Providers):
    browser = requests.Session()
    redirect = start(browser, live_server, "azure_ad")

    assert redirect.status_code == 302
    url = urllib.parse.urlsplit(redirect.headers["Location"])
    query = dict(urllib.parse.parse_qsl(url.query))
    assert f"{url.scheme}://{url.netloc}" == providers.azure.issuer and url.path == "/oauth2/authorize"
    assert query["response_type"] == "code" and query["client_id"] == AZURE_CLIENT_ID
    assert query["redirect_uri"] == f"{live_server.url}/admin/sign-in/azure_ad/callback/"
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 20 and len(query["nonce"]) >= 20
    # The verifier stays server-side, in the session; the challenge is its SHA-256.
    stored = SessionStore(session_key=browser.cookies["sessionid"]).load()
    [data] = [v["data"] for k, v in stored.items() if k.startswith("_state_azure_ad_")]
    digest = base64.urlsafe_b64encode(hashlib.sha256(data["code_verifier"].encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == digest and data["nonce"] == query["nonce"]
    assert data["code_verifier"] not in redirect.headers["Location"]


def test_staff_sign_in_provisions_them_and_opens_the_admin(live_server, providers):
    oid = str(uuid.uuid4())
    browser, done = sign_in(
        live_server, providers.azure, "azure_ad", f"staff-{oid}", azure_claims(oid, roles=["admin"])
    )

    assert done.status_code == 302 and done.headers["Location"] == "/admin/"
    assert admin_index(browser, live_server).status_code == 200
    user = User.objects.get(provider="azure_ad", provider_user_id=oid)
    assert (user.roles, user.is_staff, user.is_superuser) == (["admin"], True, False)
    [login] = AuditLog.objects.filter(action="LOGIN", user_id=user.pk)
    assert login.metadata == {"channel": "admin", "provider": "azure_ad"} and login.response_status == 302
    [created] = AuditLog.objects.filter(action="CREATE", resource_id=str(user.pk))
    assert created.metadata["actor"] == "system:oidc"
    # What they may do there comes from the role: an admin manages users.
    assert browser.get(f"{live_server.url}/admin/accounts/user/add/", timeout=15).status_code == 200


def test_a_viewer_from_a_cognito_group_is_staff_who_may_only_look(live_server, providers):
    sub = str(uuid.uuid4())
    claims = {"token_use": "id", "email": f"{sub[:8]}@cognito.example", "cognito:groups": ["AgentService.Viewers"]}
    browser, done = sign_in(live_server, providers.cognito, "aws_cognito", sub, claims)

    assert done.status_code == 302
    assert browser.get(f"{live_server.url}/admin/accounts/user/", timeout=15).status_code == 200
    assert browser.get(f"{live_server.url}/admin/accounts/user/add/", timeout=15).status_code == 403
    assert User.objects.get(provider_user_id=sub).roles == ["viewer"]


def test_the_next_page_is_honoured_and_a_foreign_one_ignored(live_server, providers):
    _, done = sign_in(
        live_server, providers.generic, "oidc", "n1", {"email": "n1@sso.example", "roles": ["admin"]}, "/admin/audit/"
    )
    assert done.headers["Location"] == "/admin/audit/"
    _, done = sign_in(
        live_server,
        providers.generic,
        "oidc",
        "n2",
        {"email": "n2@sso.example", "roles": ["admin"]},
        "https://evil.example/",
    )
    assert done.headers["Location"] == "/admin/"


def test_a_user_without_staff_rights_sees_a_refusal_not_the_login_again(live_server, providers):
    sub = str(uuid.uuid4())
    browser, done = sign_in(
        live_server, providers.generic, "oidc", sub, {"email": "plain@sso.example", "roles": ["user"]}
    )

    assert done.status_code == 403
    assert "no staff rights" in done.text and "plain@sso.example" in done.text
    assert 'id="login-form"' not in done.text
    assert admin_index(browser, live_server).status_code == 302  # not signed in
    user = User.objects.get(provider_user_id=sub)
    [row] = AuditLog.objects.filter(action="FAILED_AUTH", user_id=user.pk)
    assert row.metadata == {"channel": "admin", "provider": "oidc", "reason": "not_staff"}
    assert row.response_status == 403


def test_an_inactive_user_is_refused(live_server, providers, make_user):
    oid = str(uuid.uuid4())
    make_user(provider="azure_ad", provider_user_id=oid, is_active=False, is_staff=True, roles=["admin"])
    browser, done = sign_in(live_server, providers.azure, "azure_ad", f"x-{oid}", azure_claims(oid, roles=["admin"]))
    assert done.status_code == 401 and "inactive" in done.text
    assert admin_index(browser, live_server).status_code == 302


def test_a_forged_or_replayed_state_is_refused(live_server, providers):
    browser = requests.Session()
    redirect = start(browser, live_server, "oidc")
    providers.generic.set_user("s1", {"email": "s1@sso.example", "roles": ["admin"]})
    callback = log_in_at_provider(browser, redirect.headers["Location"], "s1")
    forged = re.sub(r"state=[^&]+", "state=forged", callback)

    response = browser.get(forged, allow_redirects=False, timeout=15)
    assert response.status_code == 400 and "start it again" in response.text
    assert browser.get(callback, allow_redirects=False, timeout=15).status_code == 302  # the real one still works
    assert browser.get(callback, allow_redirects=False, timeout=15).status_code == 400  # but only once
    reasons = list(AuditLog.objects.filter(action="FAILED_AUTH").values_list("metadata__reason", flat=True))
    assert reasons == ["state_mismatch", "state_mismatch"]


def test_a_code_issued_for_another_nonce_is_refused(live_server, providers):
    browser = requests.Session()
    redirect = start(browser, live_server, "oidc")
    providers.generic.set_user("s2", {"email": "s2@sso.example", "roles": ["admin"]})
    other_nonce = re.sub(r"nonce=[^&]+", "nonce=attacker-chosen-nonce-0123456789", redirect.headers["Location"])
    callback = log_in_at_provider(browser, other_nonce, "s2")

    response = browser.get(callback, allow_redirects=False, timeout=15)
    assert response.status_code == 401 and admin_index(browser, live_server).status_code == 302
    assert AuditLog.objects.get(action="FAILED_AUTH").metadata["reason"] == "id_token_invalid"


def test_denying_at_the_provider_is_a_refusal(live_server, providers):
    browser = requests.Session()
    redirect = start(browser, live_server, "oidc")
    callback = log_in_at_provider(browser, redirect.headers["Location"], "", deny=True)
    response = browser.get(callback, allow_redirects=False, timeout=15)
    assert response.status_code == 401 and "access_denied" in response.text
    assert AuditLog.objects.get(action="FAILED_AUTH").metadata["reason"] == "provider_error"


def test_failed_sign_ins_count_toward_the_admin_login_throttle(live_server, providers, settings):
    from django.core.cache import cache

    cache.clear()  # rate counters outlive transactional tests
    settings.ADMIN_LOGIN_RATE = "2/hour"
    browser = requests.Session()
    bogus = f"{live_server.url}/admin/sign-in/oidc/callback/?code=x&state=y"
    assert [browser.get(bogus, timeout=15).status_code for _ in range(2)] == [400, 400]
    blocked = browser.get(bogus, timeout=15)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert start(browser, live_server, "oidc").status_code == 429
    cache.clear()  # the block outlives this transactional test too


def test_an_unreachable_provider_is_a_clear_503(live_server, settings):
    with MockProvider() as gone:
        settings.IDENTITY_PROVIDERS = identity_providers_from(provider_env(generic=gone))
    response = start(requests.Session(), live_server, "oidc")
    assert response.status_code == 503 and "unreachable" in response.text
    assert int(response.headers["Retry-After"]) > 0


def test_logout_ends_the_admin_session(live_server, providers):
    browser, done = sign_in(
        live_server, providers.generic, "oidc", "out", {"email": "out@sso.example", "roles": ["admin"]}
    )
    assert done.status_code == 302 and admin_index(browser, live_server).status_code == 200
    token = browser.get(f"{live_server.url}/admin/", timeout=15).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', token)[1]

    response = browser.post(
        f"{live_server.url}/admin/logout/",
        data={"csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{live_server.url}/admin/"},
        timeout=15,
    )

    assert response.status_code == 200
    assert admin_index(browser, live_server).status_code == 302
    user = User.objects.get(provider="oidc", provider_user_id="out")
    assert AuditLog.objects.filter(action="LOGOUT", user_id=user.pk).count() == 1


def test_a_cognito_id_token_for_another_client_is_refused(live_server, provider_servers, settings):
    # Our Cognito app client is COGNITO_CLIENT_ID; a sign-in whose ID token names another is refused.
    env = provider_env(cognito=provider_servers.cognito)
    settings.IDENTITY_PROVIDERS = identity_providers_from(env)
    sub = str(uuid.uuid4())
    claims = {"token_use": "id", "email": "c@cognito.example", "aud": "another", "cognito:groups": ["admins"]}
    browser, done = sign_in(live_server, provider_servers.cognito, "aws_cognito", sub, claims)
    assert done.status_code == 401 and admin_index(browser, live_server).status_code == 302
    # Authlib's own ID-token check refuses it before ours (which would say token_invalid_audience).
    assert AuditLog.objects.get(action="FAILED_AUTH").metadata["reason"] == "id_token_invalid"
    assert not User.objects.filter(provider_user_id=sub).exists()
