"""An embedded PostgreSQL for development and tests, used when DATABASE_URL is not set.

The server (from the ``pgserver`` wheel, which carries the PostgreSQL binaries) lives in the
git-ignored ``.pgdata/`` folder of the project, listens only on a unix socket there, and keeps
running between commands so that its data survives ``make run`` restarts. Production sets
DATABASE_URL and never touches this module.

    python -m config.db.embedded_postgres url     # start if needed, print DATABASE_URL
    python -m config.db.embedded_postgres stop    # stop the server (data is kept)
    python -m config.db.embedded_postgres status
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from config.env import BASE_DIR

DATABASE_NAME = "agent_platform"

# platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then uses /tmp.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def pgdata_dir() -> Path:
    return Path(os.environ.get("EMBEDDED_PGDATA", BASE_DIR / ".pgdata")).resolve()


def _server() -> Any:
    import pgserver

    return pgserver.get_server(pgdata_dir(), cleanup_mode=None)


def bin_dir() -> Path:
    """Where the embedded server's client programs (pg_dump, pg_restore, psql) are."""
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def ensure_running() -> str:
    """Start the embedded server if it is not running; return the DATABASE_URL for our database."""
    server = _server()
    socket_dir = server.get_postmaster_info().socket_dir
    _ensure_database(socket_dir)
    return f"postgresql://postgres@/{DATABASE_NAME}?host={socket_dir}"


def _ensure_database(socket_dir: Path) -> None:
    import psycopg

    with psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def stop() -> None:
    pgdata = pgdata_dir()
    if not (pgdata / "postmaster.pid").exists():
        print("embedded PostgreSQL is not running")
        return
    pg_ctl = bin_dir() / "pg_ctl"
    cmd = [str(pg_ctl), "-D", str(pgdata), "-w", "stop", "-m", "fast"]
    if os.geteuid() == 0:
        # pgserver runs the server as an unprivileged system user when started by root.
        cmd = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(cmd)]
    subprocess.run(cmd, check=True)  # noqa: S603


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "url"
    if command == "url":
        print(ensure_running())
    elif command == "stop":
        stop()
    elif command == "status":
        running = (pgdata_dir() / "postmaster.pid").exists()
        print(f"embedded PostgreSQL in {pgdata_dir()}: {'running' if running else 'stopped'}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
