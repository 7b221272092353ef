"""The admin's sign-in with an identity provider in a real browser (Debian's Chromium through
Playwright): our login page's button, the provider's own login form, back into the admin;
a user without staff rights gets the refusal page. Screenshots land in artifacts/."""

from __future__ import annotations

import uuid

import pytest

from accounts.models import User
from audit.models import AuditLog
from tests.browser import ARTIFACTS
from tests.oidc_provider import AZURE_TENANT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_sign_in_with_azure_ad_through_the_providers_login_form(browser_page, live_server, providers, settings):
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    oid = str(uuid.uuid4())
    providers.azure.set_user(
        "grace",
        {"oid": oid, "tid": AZURE_TENANT, "email": "grace@contoso.example", "name": "Grace", "roles": ["admin"]},
    )
    page = browser_page

    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#identity-providers")
    assert page.is_visible("#login-form")  # the password form stays, for local users
    page.screenshot(path=str(ARTIFACTS / "admin-login-identity-providers.png"), full_page=True)
    page.click("#sign-in-azure_ad")

    # The provider's own page: a real login form on another origin.
    page.wait_for_selector("input[name=sub]")
    assert page.url.startswith(f"{providers.azure.issuer}/oauth2/authorize?")
    page.get_by_placeholder("sub").fill("grace")
    page.screenshot(path=str(ARTIFACTS / "identity-provider-login-form.png"), full_page=True)
    page.get_by_role("button", name="Authorize").click()

    page.wait_for_selector("#site-name")
    assert page.url == f"{live_server.url}/admin/"
    assert "grace@contoso.example" in page.inner_text("#user-tools").lower()
    page.screenshot(path=str(ARTIFACTS / "admin-signed-in-with-azure-ad.png"), full_page=True)
    user = User.objects.get(provider="azure_ad", provider_user_id=oid)
    assert AuditLog.objects.filter(action="LOGIN", user_id=user.pk, metadata__provider="azure_ad").count() == 1

    page.click("#logout-form button")
    page.wait_for_selector("text=Logged out")
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#login-form")
    assert AuditLog.objects.filter(action="LOGOUT", user_id=user.pk).count() == 1


def test_a_user_without_staff_rights_sees_the_refusal_page_in_a_browser(browser_page, live_server, providers, settings):
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    providers.generic.set_user("henry", {"email": "henry@sso.example", "name": "Henry", "roles": ["user"]})
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/")
    page.click("#sign-in-oidc")
    page.wait_for_selector("input[name=sub]")
    page.get_by_placeholder("sub").fill("henry")
    page.get_by_role("button", name="Authorize").click()

    page.wait_for_selector("#sign-in-refused-reason")
    assert "no staff rights" in page.inner_text("#sign-in-refused-reason")
    assert "henry@sso.example" in page.inner_text("#sign-in-refused-user")
    assert not page.is_visible("#login-form")
    page.screenshot(path=str(ARTIFACTS / "admin-sign-in-refused.png"), full_page=True)
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#login-form")  # not signed in
