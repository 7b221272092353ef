"""Real servers for the fault tests: a private PostgreSQL, gunicorn, PgBouncer.

The fault tests restart and starve a database, so they never touch the shared embedded server
or the machine's PostgreSQL: each starts its own from the embedded binaries in a temporary
directory, on a free loopback port. PostgreSQL and PgBouncer refuse to run as root; as root
they run as the unprivileged ``pgserver`` user that the embedded server already uses.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from config.db import embedded_postgres

BASE_DIR = Path(__file__).resolve().parents[2]
SERVICE_USER = "pgserver"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def _run_as() -> str | None:
    """The user to run PostgreSQL and PgBouncer as (None: the current user)."""
    if os.geteuid() != 0:
        return None
    # As pgserver does for the embedded server: an unprivileged user that can reach the binaries.
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SERVICE_USER)
    binaries = embedded_postgres.bin_dir()
    ensure_prefix_permissions(binaries)
    ensure_folder_permissions(binaries, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(binaries.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    return SERVICE_USER


def _private_dir(prefix: str) -> Path:
    # Not under pytest's tmp_path: its parents are private to root, so the service user could
    # not reach a data directory there.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    user = _run_as()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)
    return path


def _run(cmd: list[str], *, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, user=_run_as(), capture_output=True, text=True, timeout=timeout, check=check, cwd="/")


class PrivatePostgres:
    """A throwaway PostgreSQL 16 on 127.0.0.1:<free port>, trust auth, owned by this test."""

    def __init__(self, *, settings: Mapping[str, str] | None = None) -> None:
        self.root = _private_dir("rel-pg-")
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.settings = {"fsync": "off", "max_connections": "100", **(settings or {})}
        self.bin = embedded_postgres.bin_dir()
        _run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
            timeout=120,
        )

    def _options(self) -> str:
        options = [f"-p {self.port}", f"-k {self.root}", "-c listen_addresses=127.0.0.1"]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        return " ".join(options)

    def _pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return _run([str(self.bin / "pg_ctl"), "-D", str(self.data), *args], timeout=timeout)

    def start(self) -> None:
        self._pg_ctl("-w", "-l", str(self.log), "-o", self._options(), "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-m", mode, "-l", str(self.log), "-o", self._options(), "restart")

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.is_running():
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def conninfo(self, dbname: str = "postgres") -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": "postgres", "dbname": dbname}

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        return psycopg.connect(**self.conninfo(dbname), **kwargs)

    def create_database(self, name: str) -> str:
        with self.connect(autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"


# What the README recommends for PgBouncer in front of this service (see "Database outages"):
# retry a failed server connection after a tenth of a second (not fifteen), give a connection
# attempt a second, never keep a query waiting for a server longer than the service waits
# for an unreachable database (DB_OUTAGE_TIMEOUT), and drop a server connection whose packets go
# unacknowledged as long.
PGBOUNCER_OUTAGE_SETTINGS = {
    "server_login_retry": "0.1",
    "server_connect_timeout": "1",  # whole seconds: PgBouncer reads 0.5 as 0
    "query_wait_timeout": "1.5",
    "tcp_user_timeout": "1500",
}


class PgBouncer:
    """PgBouncer in transaction pool mode in front of a PostgreSQL, on 127.0.0.1:<free port>.
    ``start``/``stop`` keep its configuration (so a test can restart it); ``destroy`` removes it."""

    def __init__(
        self,
        *,
        server_host: str,
        server_port: int,
        pool_size: int = 20,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.root = _private_dir("rel-pgbouncer-")
        self.port = free_port()
        self.ini = self.root / "pgbouncer.ini"
        self.ini.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={server_host} port={server_port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    f"unix_socket_dir = {self.root}",
                    "auth_type = trust",
                    "admin_users = postgres",
                    f"auth_file = {self.root / 'users.txt'}",
                    "pool_mode = transaction",
                    f"default_pool_size = {pool_size}",
                    "max_client_conn = 500",
                    # Drivers send these at startup; transaction pooling cannot keep them.
                    "ignore_startup_parameters = extra_float_digits,options",
                    f"logfile = {self.root / 'pgbouncer.log'}",
                    f"pidfile = {self.root / 'pgbouncer.pid'}",
                    *(f"{name} = {value}" for name, value in (settings or {}).items()),
                    "",
                ]
            )
        )
        (self.root / "users.txt").write_text('"postgres" ""\n')
        user = _run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in self.root.iterdir():
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [pgbouncer_binary() or "pgbouncer", str(self.ini)],
            user=_run_as(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        wait_for_port(self.port, timeout=15, process=self.process)

    def stop(self) -> None:
        """Stop at once (SIGINT: PgBouncer's immediate shutdown), keeping the configuration."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self, command: str) -> str:
        """A command on PgBouncer's admin console (simple query protocol only, hence psql)."""
        psql = embedded_postgres.bin_dir() / "psql"
        result = subprocess.run(
            [str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "pgbouncer", "-c", command],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production-like service process pointed at ``database_url``."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": "reliability-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "SECURE_SSL_REDIRECT": "false",
        "STATIC_MANIFEST": "false",
        "LOG_LEVEL": "warning",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("DB_TEST_NAME", None)
    env.update(extra)
    return env


def manage(*args: str, env: Mapping[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=dict(env),
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# Runs in the service's own environment: makes a user, an enterprise key and a session there.
_SEED = """
import django, json
django.setup()
from accounts.services import user_create
from apikeys.services import api_key_create
from agent_sessions.services import session_create
user = user_create(actor=None, email="load@example.com", name="Load", roles=["user"])
key, raw = api_key_create(actor=None, owner=user, name="load", scopes=("read", "write"), rate_limit_tier="enterprise")
session = session_create(actor=None, owner=user, agent_id="load", title="load")
print(json.dumps({"raw_key": raw, "session_id": str(session.pk), "user_id": str(user.pk)}))
"""


def seed(env: Mapping[str, str]) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", _SEED],
        env=dict(env),
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


class Gunicorn:
    """The production server (config/gunicorn.conf.py, sync workers) as a subprocess."""

    def __init__(self, env: Mapping[str, str], *, workers: int = 3, threads: int = 1) -> None:
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.env = {**env, "PORT": str(self.port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": str(workers)}
        self.log = Path(tempfile.mkstemp(prefix="rel-gunicorn-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    "config/gunicorn.conf.py",
                    *self._worker_args(),
                    "config.wsgi",
                ],
                env=self.env,
                cwd=BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, timeout=30, process=self.process)
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < self.workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"gunicorn started {len(self.worker_pids())} of {self.workers} workers")
            time.sleep(0.1)

    def _worker_args(self) -> list[str]:
        # The command line overrides the config file's sync workers.
        return ["--worker-class", "gthread", "--threads", str(self.threads)] if self.threads > 1 else []

    def worker_pids(self) -> set[int]:
        import psutil

        if self.process is None:
            return set()
        try:
            return {child.pid for child in psutil.Process(self.process.pid).children() if child.is_running()}
        except psutil.NoSuchProcess:
            return set()

    def stop(self) -> str:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        output = self.log.read_text(errors="replace") if self.log.exists() else ""
        self.log.unlink(missing_ok=True)
        return output

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    seconds: float
    error: str = ""  # why no HTTP response came back (status 0)

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    key: str | None = None,
    body: Any = None,
    timeout: float = 30,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One HTTP request to a loopback server; a connection failure is status 0."""
    assert urllib.parse.urlsplit(url).hostname in LOOPBACK, "the reliability tests only talk to loopback servers"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.read(), dict(response.headers), time.perf_counter() - started)
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read(), dict(exc.headers), time.perf_counter() - started)
    except (urllib.error.URLError, OSError) as exc:
        return Reply(0, b"", {}, time.perf_counter() - started, error=repr(exc))


class StreamingStandby(PrivatePostgres):
    """A hot standby of ``primary`` by streaming replication: ``pg_basebackup -R`` (standby.signal
    and primary_conninfo written for us), on its own free loopback port."""

    def __init__(self, primary: PrivatePostgres) -> None:
        self.root = _private_dir("rel-pg-standby-")
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.settings = {**primary.settings, "hot_standby": "on"}
        self.bin = primary.bin
        _run(
            [
                str(self.bin / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.data),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            timeout=180,
        )

    def pause_replay(self) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")


class StreamingPair:
    """A primary (``wal_level=replica``) and one hot standby streaming from it, both private to the
    test run. ``database`` on the primary is migrated before the standby is copied from it."""

    def __init__(self, database: str = "app") -> None:
        self.database = database
        self.primary = PrivatePostgres(
            settings={"wal_level": "replica", "max_wal_senders": "5", "hot_standby": "on", "wal_keep_size": "64MB"}
        )
        # initdb's own entries allow replication from loopback already; say it anyway.
        with (self.primary.data / "pg_hba.conf").open("a") as hba:
            hba.write("\nhost replication all 127.0.0.1/32 trust\n")
        self.primary.start()
        self.primary.create_database(database)
        self.standby: StreamingStandby | None = None

    def start_standby(self) -> StreamingStandby:
        self.standby = StreamingStandby(self.primary)
        self.standby.start()
        self.wait_caught_up()
        return self.standby

    @property
    def primary_url(self) -> str:
        return self.primary.url(self.database)

    @property
    def standby_url(self) -> str:
        assert self.standby is not None
        return self.standby.url(self.database)

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary had written when this was called."""
        assert self.standby is not None
        with self.primary.connect(autocommit=True) as conn:
            (target,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone() or ("0/0",)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.standby.connect(autocommit=True) as conn:
                    row = conn.execute(
                        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn, pg_is_wal_replay_paused()", [str(target)]
                    ).fetchone()
                if row is not None and row[0]:
                    return
            except psycopg.OperationalError:
                pass  # still starting
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby did not replay up to {target} within {timeout}s")
            time.sleep(0.05)

    def destroy(self) -> None:
        if self.standby is not None:
            self.standby.destroy()
        self.primary.destroy()


class PrivateRedis:
    """A throwaway Redis on 127.0.0.1:<free port>, nothing persisted (Debian's redis-server)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("redis-server")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary() or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        wait_for_port(self.port, timeout=15, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
