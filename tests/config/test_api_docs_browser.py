"""The API docs in Debian's headless Chromium, with every request off this machine refused:
Swagger UI (/api/docs/) and Redoc (/api/redoc/) load from our own static files (the pinned
drf-spectacular-sidecar copy), list the operations, and "Authorize" takes an API key that
then runs a request.

Without Chromium these skip (saying why), except under ``.ci/run`` (CI_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.browser import ARTIFACTS

pytestmark = pytest.mark.browser


def offline(page, live_server_url: str) -> list[str]:
    """Refuse (and record) every request that is not to the live server."""
    local = urlsplit(live_server_url).netloc
    refused: list[str] = []

    def route(route) -> None:
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    return refused


def test_swagger_ui_renders_offline_and_authorize_takes_an_api_key(browser_page, live_server, alice):
    page = browser_page
    refused = offline(page, live_server.url)
    static: list[str] = []
    page.on("response", lambda r: static.append(r.url) if "/static/drf_spectacular_sidecar/" in r.url else None)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert len(paths) > 15 and any("/api/v1/users/me/" in p.replace("\u200b", "") for p in paths)
    assert any(url.endswith("swagger-ui-bundle.js") for url in static), static
    assert refused == []

    page.click("button.authorize")
    page.wait_for_selector(".modal-ux")
    bearer = page.locator(".modal-ux .auth-container").filter(has_text="BearerKey")
    bearer.locator("input").fill(alice.raw_key)
    bearer.locator("button.authorize").click()
    bearer.locator("button:has-text('Logout')").wait_for()
    page.locator(".modal-ux button.btn-done").first.click()

    operation = page.locator(".opblock-get").filter(has=page.locator('[data-path="/api/v1/users/me/"]')).first
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=20_000)
    assert status.inner_text().strip().startswith("200")
    assert "alice@example.com" in operation.locator(".live-responses-table").inner_text()
    assert refused == []
    page.screenshot(path=str(ARTIFACTS / "api-docs-swagger.png"), full_page=False)


def test_redoc_renders_offline(browser_page, live_server):
    page = browser_page
    refused = offline(page, live_server.url)
    page.goto(f"{live_server.url}/api/redoc/")
    page.wait_for_selector("text=/api/v1/users/me/", timeout=30_000)
    assert page.locator("h2").count() > 10  # one heading per operation
    assert refused == []
    page.screenshot(path=str(ARTIFACTS / "api-docs-redoc.png"), full_page=False)
