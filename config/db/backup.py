"""Back up and restore the configured database with pg_dump and pg_restore (custom format).

    python -m config.db.backup dump [--dir backups] [--output FILE]   # make backup
    python -m config.db.backup restore FILE [--clean]                 # make restore FILE=... [CLEAN=1]

The database is the one the service uses: DATABASE_URL (from the environment or .env), else
the embedded PostgreSQL under .pgdata/ (started if needed), exactly as config/settings.py
resolves it. Django itself is not loaded, so neither SECRET_KEY nor a migrated database is
needed.

``dump`` writes ``<dir>/<database>-<UTC timestamp>.dump`` (mode 0600: the file holds password
and key hashes), via a temporary name so that a failed dump leaves no partial file behind.

``restore`` refuses a database that already holds tables, views or sequences: restoring over
live data is how backups destroy what they were meant to protect. ``--clean`` drops the objects
the dump contains before recreating them (``pg_restore --clean --if-exists``). Either way the
restore is one transaction (``--single-transaction --exit-on-error``): all of it or none.
Ownership and grants are not restored (``--no-owner --no-privileges``): the objects belong to
the role DATABASE_URL connects as. Run ``manage.py migrate`` afterwards (it applies nothing but
rewrites the role's statement_timeout default, which lives outside the dumped database).

Client programs: the embedded server's own (PostgreSQL 16) for the embedded database; for a
DATABASE_URL server, the system's pg_dump/pg_restore when their major version is at least the
server's (pg_dump cannot dump a newer server), else the embedded ones.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from config.env import BASE_DIR

# Relations a freshly created database does not have.
_USER_RELATIONS_SQL = """
SELECT count(*)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%'
   AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""


class BackupError(Exception):
    """A backup or restore that cannot go ahead; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where to connect: a libpq conninfo without the password, which travels in PGPASSWORD."""

    conninfo: str
    password: str | None
    dbname: str
    embedded: bool

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, password=self.password, autocommit=True, connect_timeout=10)


def resolve_target() -> Target:
    """DATABASE_URL from the environment or .env, else the embedded server (as settings do)."""
    from config.env import env  # reads .env; loads no Django settings

    url = env.str("DATABASE_URL", default="").strip()
    embedded = not url
    if embedded:
        from config.db import embedded_postgres

        url = embedded_postgres.ensure_running()
    return target_for_url(url, embedded=embedded)


def target_for_url(url: str, *, embedded: bool = False) -> Target:
    # libpq reads postgresql:// and postgres:// URIs itself (including ?host=/socket/dir).
    url = re.sub(r"^pgsql://", "postgresql://", url)
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise BackupError(f"DATABASE_URL could not be parsed: {exc}") from None
    password = params.pop("password", None)
    dbname = str(params.get("dbname") or params.get("user") or "postgres")
    return Target(
        conninfo=make_conninfo("", **params),
        password=str(password) if password else None,
        dbname=dbname,
        embedded=embedded,
    )


def client_version(program: Path | str) -> int:
    """The major version of a PostgreSQL client program (``pg_dump (PostgreSQL) 16.2`` -> 16)."""
    out = subprocess.run([str(program), "--version"], capture_output=True, text=True, check=True, timeout=30).stdout  # noqa: S603
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    if not match:
        raise BackupError(f"cannot tell the version of {program}: {out.strip()!r}")
    return int(match.group(1))


def _embedded_program(program: str) -> Path | None:
    try:
        from config.db.embedded_postgres import bin_dir

        path = bin_dir() / program
    except ImportError:  # pgserver not installed (a production image may leave it out)
        return None
    return path if path.is_file() else None


def choose_client(program: str, *, server_major: int, embedded: bool) -> Path:
    """The client program to use against a server of ``server_major``.

    The embedded server gets its own binaries. Otherwise the system's, if at least as new as
    the server (a pg_dump older than the server refuses to run), else the embedded ones.
    """
    candidates: list[Path] = []
    if not embedded and (system := shutil.which(program)):
        candidates.append(Path(system))
    if (bundled := _embedded_program(program)) is not None:
        candidates.append(bundled)
    tried = []
    for candidate in candidates:
        try:
            major = client_version(candidate)
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"{candidate} ({exc})")
            continue
        if major >= server_major:
            return candidate
        tried.append(f"{candidate} (version {major})")
    raise BackupError(
        f"no {program} of PostgreSQL {server_major} or newer found; tried: {', '.join(tried) or 'nothing'}"
    )


def _server_major(target: Target) -> int:
    try:
        with target.connect() as conn:
            return conn.info.server_version // 10000
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackupError(f"cannot connect to database {target.dbname!r}: {first}") from None


def dump(target: Target, *, directory: Path, output: Path | None = None) -> Path:
    """pg_dump -Fc the target into ``output`` (default ``<directory>/<db>-<timestamp>.dump``)."""
    pg_dump = choose_client("pg_dump", server_major=_server_major(target), embedded=target.embedded)
    if output is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        output = directory / f"{target.dbname}-{stamp}.dump"
    output.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    # Created 0600 before pg_dump writes a byte into it.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    result = subprocess.run(  # noqa: S603
        [str(pg_dump), "--format=custom", "--no-owner", "--file", str(partial), "--dbname", target.conninfo],
        env=target.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
    partial.replace(output)
    return output


def user_relation_count(target: Target) -> int:
    with target.connect() as conn:
        row = conn.execute(_USER_RELATIONS_SQL).fetchone()
    return int(row[0]) if row else 0


def restore(target: Target, *, file: Path, clean: bool = False) -> None:
    """pg_restore ``file`` into the target, in one transaction; refuse a non-empty database
    unless ``clean``."""
    if not file.is_file():
        raise BackupError(f"no such backup file: {file}")
    server_major = _server_major(target)
    existing = user_relation_count(target)
    if existing and not clean:
        raise BackupError(
            f"database {target.dbname!r} is not empty ({existing} tables, views or sequences); restore into an "
            "empty database, or pass --clean (make restore CLEAN=1) to replace the objects in the dump"
        )
    pg_restore = choose_client("pg_restore", server_major=server_major, embedded=target.embedded)
    command = [
        str(pg_restore),
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        "--dbname",
        target.conninfo,
    ]
    if clean:
        command += ["--clean", "--if-exists"]
    result = subprocess.run([*command, str(file)], env=target.env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed (nothing was restored): {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.db.backup", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dump_parser = commands.add_parser("dump", help="pg_dump the configured database (custom format)")
    dump_parser.add_argument("--dir", type=Path, default=BASE_DIR / "backups", help="where to write (default backups/)")
    dump_parser.add_argument("--output", type=Path, default=None, help="exact file to write instead")
    restore_parser = commands.add_parser("restore", help="pg_restore a dump into the configured, empty database")
    restore_parser.add_argument("file", type=Path)
    restore_parser.add_argument("--clean", action="store_true", help="drop and replace the dump's objects first")
    args = parser.parse_args(argv)
    try:
        target = resolve_target()
        if args.command == "dump":
            path = dump(target, directory=args.dir, output=args.output)
            print(f"backup of {target.dbname!r} written to {path} ({path.stat().st_size} bytes)")
        else:
            restore(target, file=args.file, clean=args.clean)
            print(
                f"restored {args.file} into {target.dbname!r}; now run: manage.py migrate && manage.py verify_database"
            )
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
