"""The admin in a real browser: Debian's headless Chromium driven by Playwright.

Without Chromium these tests skip (saying why), except under ``.ci/run`` (CI_REQUIRE_BROWSER=1),
where they must run. Screenshots land in artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from accounts.models import User
from apikeys.keys import hash_key
from apikeys.models import APIKey
from audit.models import AuditLog
from tests.browser import ARTIFACTS
from tests.conftest import BASE_DIR, PASSWORD, database_url

pytestmark = pytest.mark.browser


def get(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode("utf-8", "replace")


def header_is_styled(page) -> bool:
    # Unstyled, the header has a transparent background; the admin's CSS paints it.
    colour = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
    return colour not in ("rgba(0, 0, 0, 0)", "transparent")


def test_staff_manage_users_and_keys_in_a_real_browser(browser_page, live_server, settings, make_user):
    # Plain HTTP on the loopback: the production-default Secure cookies would not be sent back.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    root = make_user("root@example.com", password=PASSWORD, is_staff=True, is_superuser=True, roles=["super_admin"])
    page = browser_page
    admin_url = f"{live_server.url}/admin/"

    # Log in.
    page.goto(admin_url)
    page.fill("#id_username", "root@example.com")
    page.fill("#id_password", PASSWORD)
    page.click("#login-form input[type=submit]")
    page.wait_for_selector("#site-name")
    assert header_is_styled(page)

    # Create a user: roles are checkboxes, groups one per line.
    page.goto(f"{admin_url}accounts/user/add/")
    page.fill("#id_email", "carol@example.com")
    page.fill("#id_name", "Carol")
    page.check("input[name=roles][value=developer]")
    page.fill("#id_groups", "eng\nops")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    carol = User.objects.get(email="carol@example.com")
    assert carol.roles == ["developer"] and carol.groups == ["eng", "ops"]

    # Create a key for her: pick the owner in the autocomplete, as a person would.
    page.goto(f"{admin_url}apikeys/apikey/add/")
    page.click("#apikey_form .field-user .select2-selection")
    page.fill(".select2-search__field", "carol")
    page.click(".select2-results__option:has-text('carol@example.com')")
    page.fill("#id_name", "browser key")
    page.check("input[name=scopes][value=write]")
    page.select_option("#id_rate_limit_tier", "pro")
    page.click("input[name=_save]")

    # The raw key, shown once, with the warning.
    page.wait_for_selector("#raw-key")
    raw = page.inner_text("#raw-key").strip()
    assert "will not be shown again" in page.inner_text("#raw-key-warning")
    page.screenshot(path=str(ARTIFACTS / "admin-key-shown.png"), full_page=True)
    key = APIKey.objects.get(name="browser key")
    assert key.user == carol and hash_key(raw) == key.key_hash
    status, _, _ = get(f"{live_server.url}/api/v1/users/me/", headers={"Authorization": f"Bearer {raw}"})
    assert status == 200

    # A reload does not show it again.
    page.reload()
    page.wait_for_selector("#raw-key-gone")
    assert raw not in page.content()

    # Revoke it from its page (the confirmation, then the list with the result).
    page.goto(f"{admin_url}apikeys/apikey/{key.pk}/change/")
    page.click("button:has-text('Revoke')")
    page.click("input[type=submit][value='Yes, revoke']")
    page.wait_for_selector(".messagelist .success")
    assert "Revoked 1 API key." in page.inner_text(".messagelist")
    key.refresh_from_db()
    assert key.state == "revoked"
    status, _, _ = get(f"{live_server.url}/api/v1/users/me/", headers={"Authorization": f"Bearer {raw}"})
    assert status == 401

    # The audit trail shows each of those actions, by this staff member.
    page.goto(f"{admin_url}audit/auditlog/?q={root.pk}")
    page.wait_for_selector("#result_list")
    listing = page.inner_text("#result_list")
    assert "carol@example.com" in listing and f"{str(key.pk)[:8]}…" in listing and "root@example.com" in listing
    page.goto(f"{admin_url}audit/auditlog/")
    page.wait_for_selector("#result_list")
    page.screenshot(path=str(ARTIFACTS / "admin-audit-list.png"), full_page=True)
    rows = {
        (row.action, row.resource_type, row.resource_id)
        for row in AuditLog.objects.filter(user_id=root.pk, request_path__startswith="/admin/")
    }
    assert ("CREATE", "user", str(carol.pk)) in rows
    assert ("CREATE", "api_key", str(key.pk)) in rows
    assert ("DELETE", "api_key", str(key.pk)) in rows
    assert ("LOGIN", "user", str(root.pk)) in rows
    assert raw not in str(list(AuditLog.objects.values_list("changes", "metadata")))


# --- production serving: gunicorn, DEBUG off, hashed static files from whitenoise ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_url(db: None, tmp_path: Path) -> Iterator[str]:
    """The service as deployed: collectstatic, then gunicorn with DEBUG off, on the test database."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict["NAME"]),
        "DEBUG": "false",
        "STATIC_MANIFEST": "true",
        "SECURE_SSL_REDIRECT": "false",
        "DB_POOL_MODE": "none",
        "WEB_CONCURRENCY": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
    }
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert collect.returncode == 0, collect.stderr
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.conf.py", "config.wsgi"],
        env=env,
        cwd=BASE_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(f"{url}/health/live")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "gunicorn.log").read_text())
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_the_admin_is_styled_under_gunicorn_with_debug_off(browser_page, gunicorn_url: str):
    status, _, html = get(f"{gunicorn_url}/admin/login/")
    assert status == 200
    css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', html)
    assert css, "the login page should link the hashed stylesheet"
    status, headers, body = get(gunicorn_url + css.group(1))
    assert status == 200 and headers["Content-Type"].startswith("text/css") and "#header" in body
    assert "immutable" in headers.get("Cache-Control", "")
    page = browser_page
    page.goto(f"{gunicorn_url}/admin/login/")
    page.wait_for_selector("#login-form")
    assert header_is_styled(page)
    page.screenshot(path=str(ARTIFACTS / "admin-login-gunicorn.png"), full_page=True)
