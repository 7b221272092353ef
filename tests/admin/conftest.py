"""Admin fixtures: staff users and their logged-in clients, and Debian's Chromium for browser tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from accounts.models import User
from tests.conftest import BASE_DIR

PASSWORD = "correct-horse-battery-staple-9"
ARTIFACTS = BASE_DIR / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and CI_REQUIRE_BROWSER=1 says the browser tests must run")
    pytest.skip(reason)


@pytest.fixture
def browser_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A page of Debian's headless Chromium (never a downloaded browser), driven by Playwright.

    Skips when Chromium or Playwright is missing, unless CI_REQUIRE_BROWSER=1 (``.ci/run``),
    where it fails instead.
    """
    executable = chromium_path()
    if executable is None:
        _unavailable("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -r requirements-dev.txt)")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(20_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            # With Playwright's loop running, asgiref gives the test's ORM calls their own
            # connection; close it here, or it outlives the test and blocks dropping the database.
            connections.close_all()
