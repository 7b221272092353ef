"""The admin's own pages in Debian's headless Chromium: the History pages (the audit trail), the
index's dashboard in the light and dark themes, and change lists that fit a 1280 px window.

Without Chromium these skip (saying why), except under ``.ci/run`` (CI_REQUIRE_BROWSER=1), where
they must run. Screenshots land in artifacts/ (git-ignored).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from agent_sessions.services import session_append_message, session_create
from apikeys.services import api_key_create
from audit.models import AuditLog
from audit.services import audit_log_record
from tests.browser import ARTIFACTS
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def staff_browser(browser_page, live_server, settings, make_user):
    """The browser page, logged into the admin as a superuser; returns (page, admin URL, user)."""
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    root = make_user("root@example.com", password=PASSWORD, is_staff=True, is_superuser=True, roles=["super_admin"])
    page = browser_page
    admin_url = f"{live_server.url}/admin/"
    page.goto(admin_url)
    page.fill("#id_username", "root@example.com")
    page.fill("#id_password", PASSWORD)
    page.click("#login-form input[type=submit]")
    page.wait_for_selector("#site-name")
    return page, admin_url, root


def _busy_platform(root, make_user) -> dict[str, object]:
    """Long values in every column a list shows: emails, names, agent ids, keys, audit rows."""
    owner = make_user(
        "a.very.long.email.address.for.testing.widths@subdomain.example-company.com",
        name="Someone With A Rather Long Display Name",
        roles=["developer", "viewer", "user"],
        groups=["engineering-platform", "operations-on-call"],
    )
    key, _ = api_key_create(
        actor=root,
        owner=owner,
        name="continuous-integration deploy key for the staging cluster",
        scopes=["read", "write"],
        rate_limit_tier="enterprise",
        expires_at=timezone.now() + timedelta(days=3),
    )
    sessions = []
    for i in range(3):
        session = session_create(
            actor=root,
            owner=owner,
            agent_id=f"customer-support-agent-with-a-long-identifier-{i}",
            title=f"A conversation about refunds, shipping delays and a damaged parcel, part {i}",
        )
        for n in range(4):
            session_append_message(
                session_id=session.pk, role="user", content=f"message {n}", token_count=100 * (i + 1)
            )
        sessions.append(session)
    for _ in range(3):
        audit_log_record(action=AuditLog.Action.FAILED_AUTH, resource_type="api_key", metadata={"reason": "unknown"})
    return {"owner": owner, "key": key, "sessions": sessions}


LISTS = {
    "users": "accounts/user/",
    "keys": "apikeys/apikey/",
    "sessions": "agent_sessions/session/",
    "audit": "audit/auditlog/",
}


def test_change_lists_fit_1280_px_without_cutting_columns(staff_browser, make_user):
    page, admin_url, root = staff_browser
    _busy_platform(root, make_user)
    page.set_viewport_size({"width": 1280, "height": 900})
    for name, path in LISTS.items():
        page.goto(admin_url + path)
        page.wait_for_selector("#result_list")
        widths = page.evaluate(
            """() => {
                const table = document.querySelector('#result_list');
                const holder = table.closest('.results');
                const cells = [...table.querySelectorAll('th, td')];
                const clipped = cells.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.className + ': ' + c.innerText);
                return {
                    page: document.documentElement.scrollWidth, window: document.documentElement.clientWidth,
                    table: table.getBoundingClientRect().right, holder: holder.getBoundingClientRect().right,
                    holderScroll: holder.scrollWidth, holderClient: holder.clientWidth, clipped,
                    columns: [...table.querySelectorAll('thead th')].map(th => th.innerText.trim()),
                };
            }"""
        )
        page.screenshot(path=str(ARTIFACTS / f"admin-list-{name}-1280.png"), full_page=True)
        assert widths["page"] <= widths["window"], (name, widths)
        assert widths["holderScroll"] <= widths["holderClient"], (name, widths)
        assert widths["table"] <= widths["holder"] + 1, (name, widths)
        assert widths["clipped"] == [], (name, widths)


def test_an_objects_history_page_is_its_audit_trail(staff_browser, alice):
    page, admin_url, root = staff_browser
    session = session_create(actor=root, owner=alice.user, agent_id="planner", title="Trip plan")
    response = alice.client.patch(f"/api/v1/sessions/{session.pk}/", {"title": "Trip to Lisbon"}, format="json")
    assert response.status_code == 200
    page.goto(f"{admin_url}agent_sessions/session/{session.pk}/change/")
    page.click("a.historylink")
    page.wait_for_selector("#audit-history")
    rows = page.locator("#audit-history tr.history-row")
    assert rows.count() == 2
    newest = rows.nth(0).inner_text()
    assert "UPDATE" in newest and "alice@example.com" in newest and alice.key.key_hint in newest
    assert "Trip plan" in newest and "Trip to Lisbon" in newest and "127.0.0.1" in newest
    old = rows.nth(0).locator("code.old")
    assert old.inner_text() == "Trip plan"
    assert page.evaluate("getComputedStyle(document.querySelector('#audit-history code.old')).textDecorationLine") == (
        "line-through"
    )
    assert "CREATE" in rows.nth(1).inner_text() and "root@example.com" in rows.nth(1).inner_text()
    assert "change history" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "admin-history.png"), full_page=True)
    # The index's recent actions: this staff member's own rows, linking to the objects.
    page.goto(admin_url)
    recent = page.locator("#recent-actions-module")
    assert "Trip" in recent.inner_text()
    recent.locator(f'a[href="/admin/agent_sessions/session/{session.pk}/change/"]').first.click()
    page.wait_for_selector("#session_form")


CONTRAST = """(selector) => {
    const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
    const lum = ([r, g, b]) => {
        const c = [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
    const background = rgb(getComputedStyle(document.body).backgroundColor);
    const bar = rgb(getComputedStyle(document.querySelector(selector + ' .bar')).fill);
    const tick = rgb(getComputedStyle(document.querySelector(selector + ' text')).fill);
    return {background, bar: ratio(bar, background), text: ratio(tick, background)};
}"""


def test_the_dashboard_is_drawn_offline_and_readable_in_light_and_dark(staff_browser, make_user):
    page, admin_url, root = staff_browser
    _busy_platform(root, make_user)
    cache.clear()  # the login's first look at the index cached today's (then empty) figures
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(admin_url)
    page.wait_for_selector("#activity-dashboard svg.chart")
    assert page.locator("#activity-dashboard svg.chart").count() == 4
    assert page.locator("#activity-dashboard .chart-columns rect.bar").count() == 90  # 30 days, 3 charts
    assert page.locator("#activity-dashboard .chart-bars rect.bar").count() == 3  # three agents
    figures = page.inner_text("#dashboard-totals")
    assert "messages today" in figures and "keys expiring within 7 days" in figures
    # Nothing but this server: no CDN, no font or script from elsewhere.
    assert requests and all(url.startswith(admin_url.rsplit("/admin/", 1)[0]) for url in requests), requests
    light = page.evaluate(CONTRAST, "#activity-dashboard .chart-columns")
    assert sum(light["background"]) > 600  # a light page
    assert light["bar"] >= 3 and light["text"] >= 4.5, light
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.screenshot(path=str(ARTIFACTS / "admin-dashboard-light.png"), full_page=True)

    page.evaluate("localStorage.setItem('theme', 'dark')")
    page.reload()
    page.wait_for_selector("#activity-dashboard svg.chart")
    dark = page.evaluate(CONTRAST, "#activity-dashboard .chart-columns")
    assert sum(dark["background"]) < 150  # the admin's dark theme
    assert dark["bar"] >= 3 and dark["text"] >= 4.5, dark
    bars = page.evaluate(CONTRAST, "#activity-dashboard .chart-bars")
    assert bars["bar"] >= 3 and bars["text"] >= 4.5, bars
    page.screenshot(path=str(ARTIFACTS / "admin-dashboard-dark.png"), full_page=True)
