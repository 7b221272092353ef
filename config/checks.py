"""Startup checks: what must be true before the service takes a request.

With ``STATIC_MANIFEST`` on (the default when DEBUG is off), every static file is served under
its hashed name from ``STATIC_ROOT/staticfiles.json``, which only ``manage.py collectstatic``
writes. Without it, the first page that links a stylesheet (the admin's login) fails with a
500. So a missing or incomplete manifest is an error of ``manage.py check --deploy`` (a
system check, registered by ``config.apps.ProjectConfig``), and ``config.wsgi`` refuses to start
the service on the same finding, naming the command that fixes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured

MANIFEST_NAME = "staticfiles.json"
FIX = "run `manage.py collectstatic --noinput` (make run does), or set STATIC_MANIFEST=false"


def _source_files() -> set[str]:
    """Every static file collectstatic would copy (the apps' and the finders')."""
    ignore = list(apps.get_app_config("staticfiles").ignore_patterns)  # type: ignore[attr-defined]
    found: set[str] = set()
    for finder in get_finders():
        for path, _storage in finder.list(ignore):
            found.add(Path(path).as_posix())
    return found


def static_manifest_problem() -> str | None:
    """Why the hashed static files cannot be served, or None when they can (or are not used)."""
    if not settings.STATIC_MANIFEST:
        return None
    manifest = Path(settings.STATIC_ROOT) / MANIFEST_NAME
    if not manifest.is_file():
        return f"STATIC_MANIFEST is on but {manifest} does not exist: {FIX}."
    try:
        paths = json.loads(manifest.read_text(encoding="utf-8")).get("paths", {})
    except (OSError, ValueError, AttributeError) as exc:
        return f"STATIC_MANIFEST is on but {manifest} cannot be read ({exc}): {FIX}."
    missing = sorted(_source_files() - set(paths))
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        return (
            f"STATIC_MANIFEST is on but {len(missing)} static file(s) are missing from {manifest} "
            f"({shown}); it is older than the code: {FIX}."
        )
    return None


def check_static_manifest(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problem = static_manifest_problem()
    return [Error(problem, id="config.E001")] if problem else []


def refuse_to_start_without_static_files() -> None:
    """Raise ImproperlyConfigured when the manifest storage cannot serve (config.wsgi)."""
    problem = static_manifest_problem()
    if problem:
        raise ImproperlyConfigured(problem)
