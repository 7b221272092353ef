"""Where code lives, pinned: config's plumbing imports no app, apps never import config's wiring,
and hand-written SQL stays where a reader looks for it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import BASE_DIR

APPS = ("accounts", "apikeys", "agent_sessions", "audit")
# Plumbing every layer may use: it must not know the apps.
PLUMBING = ("config/db", "config/api", "config/admin", "config/env.py", "config/errors.py", "config/ratelimit.py")
PLUMBING += ("config/context.py", "config/identity_providers.py")
# Wiring: it uses the apps, and nothing in an app may use it (settings only through django.conf).
WIRING = ("config.settings", "config.urls", "config.wsgi", "config.apps", "config.health", "config.middleware")
WIRING += ("config.logging", "config.views", "config.management")


def python_files(*places: str) -> list[Path]:
    files: list[Path] = []
    for place in places:
        path = BASE_DIR / place
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [f for f in files if "migrations" not in f.parts]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", python_files(*PLUMBING), ids=lambda p: str(p.relative_to(BASE_DIR)))
def test_config_plumbing_imports_no_app(path: Path):
    assert not {m for m in imported_modules(path) if m.split(".")[0] in APPS}


@pytest.mark.parametrize("path", python_files(*APPS), ids=lambda p: str(p.relative_to(BASE_DIR)))
def test_apps_never_import_configs_wiring(path: Path):
    wiring = {m for m in imported_modules(path) if any(m == w or m.startswith(w + ".") for w in WIRING)}
    assert not wiring


def test_each_app_owns_its_routes_and_config_includes_them_by_name():
    urls = (BASE_DIR / "config" / "urls.py").read_text(encoding="utf-8")
    for app in APPS:
        assert (BASE_DIR / app / "urls.py").is_file()
        assert f'include("{app}.urls")' in urls
    assert not {m for m in imported_modules(BASE_DIR / "config" / "urls.py") if m.split(".")[0] in APPS}


def test_each_app_owns_its_admin_templates():
    assert not (BASE_DIR / "templates").exists()
    for app in APPS:
        for template in (BASE_DIR / app / "templates").rglob("*.html"):
            assert template.relative_to(BASE_DIR / app / "templates").parts[:2] == ("admin", app)


@pytest.mark.parametrize("path", python_files(*APPS), ids=lambda p: str(p.relative_to(BASE_DIR)))
def test_hand_written_sql_on_app_tables_is_in_queries_or_a_manager(path: Path):
    """A cursor in an app is used only in its queries.py (reads) or models.py (a manager's write)."""
    source = path.read_text(encoding="utf-8")
    if ".cursor()" in source or "RawSQL(" in source or ".raw(" in source:
        assert path.name in {"queries.py", "models.py"}, path
