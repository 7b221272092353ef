"""With the manifest storage on, a missing or stale collectstatic stops the service at startup
(and fails ``check --deploy``) with the command to run, instead of a 500 on the first page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.db import connection

from tests.config.test_admin_browser import free_port, get
from tests.conftest import BASE_DIR, database_url, run_manage


def manifest_env(static_root: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url(connection.settings_dict["NAME"]),
        "DEBUG": "false",
        "STATIC_MANIFEST": "true",
        "STATIC_ROOT": str(static_root),
        "SECURE_SSL_REDIRECT": "false",
        "DB_POOL_MODE": "none",
    }


def test_check_deploy_fails_without_collectstatic_naming_the_command(db, tmp_path: Path):
    env = manifest_env(tmp_path / "static")
    result = run_manage("check", "--deploy", env=env)
    assert result.returncode != 0
    assert "config.E001" in result.stderr and "manage.py collectstatic" in result.stderr
    assert str(tmp_path / "static" / "staticfiles.json") in result.stderr

    # migrate and collectstatic still run without a manifest (they must, to make one).
    collected = run_manage("collectstatic", "--noinput", "-v", "0", env=env, timeout=300)
    assert collected.returncode == 0, collected.stderr
    again = run_manage("check", "--deploy", env=env)
    assert "config.E001" not in again.stderr, again.stderr

    # A manifest older than the code (a file added since) is as bad as none.
    manifest = tmp_path / "static" / "staticfiles.json"
    data = json.loads(manifest.read_text())
    del data["paths"]["drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"]
    manifest.write_text(json.dumps(data))
    stale = run_manage("check", "--deploy", env=env)
    assert stale.returncode != 0 and "missing from" in stale.stderr and "swagger-ui-bundle.js" in stale.stderr


def test_gunicorn_refuses_to_start_without_collectstatic(db, tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        **manifest_env(tmp_path / "static"),
        "WEB_CONCURRENCY": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
    }
    server = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.conf.py", "config.wsgi"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert server.returncode != 0
    assert "manage.py collectstatic" in server.stderr and "ImproperlyConfigured" in server.stderr
    try:
        status = get(f"http://127.0.0.1:{port}/health/live")[0]
    except OSError:
        status = None
    assert status is None  # nothing is listening: no 500 to find on the first page
