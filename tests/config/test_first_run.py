"""A newcomer's first run, as the README tells it: on a fresh clone, `make run`, then every
command of the README's "Then, for example" block and of its Operations block, exactly as
printed, in a second terminal.

Slow (it builds the clone's own .venv and embedded PostgreSQL; pip's cache makes that a minute
or two). It clones the committed HEAD, as a newcomer would: uncommitted changes are not tested.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BASE_DIR

pytestmark = pytest.mark.slow

# Commands of the Operations block not run here, and why.
NOT_RUN = {
    "make lint": "installs the dev tools into the clone; CI runs `make lint` itself on a clean clone",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def newcomer_env() -> dict[str, str]:
    """This machine's environment without any of the project's settings (the test run's own
    DEBUG, SECRET_KEY, DATABASE_URL, ... and every variable .env.example names)."""
    names = set(re.findall(r"^#\s*([A-Z][A-Z0-9_]+)=", (BASE_DIR / ".env.example").read_text(), re.M))
    names |= {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DB_TEST_NAME", "VIRTUAL_ENV", "PYTHONPATH"}
    names |= {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DJANGO_SUPERUSER_EMAIL", "DJANGO_SUPERUSER_PASSWORD"}
    names |= {"CI_REQUIRE_BROWSER", "CI_REQUIRE_PGBOUNCER", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return {k: v for k, v in os.environ.items() if k not in names}


def readme_block(readme: str, heading: str) -> list[str]:
    """The commands of the first ```bash block after ``heading``, comments dropped."""
    found = re.search(re.escape(heading) + r".*?```bash\n(.*?)```", readme, re.S)
    assert found, f"no bash block after {heading!r} in the README"
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in found.group(1).splitlines()]
    return [line for line in lines if line]


@pytest.fixture
def clone() -> Iterator[Path]:
    # A short path: the embedded PostgreSQL's unix socket lives under .pgdata/.
    root = Path(tempfile.mkdtemp(prefix="firstrun-", dir="/tmp"))
    subprocess.run(["git", "clone", "-q", str(BASE_DIR), str(root / "c")], check=True, timeout=120)
    try:
        yield root / "c"
    finally:
        if (root / "c" / ".venv" / "bin" / "python").exists():
            subprocess.run(["make", "-s", "db-stop"], cwd=root / "c", env=newcomer_env(), timeout=120, check=False)
        shutil.rmtree(root, ignore_errors=True)


def wait_for_health(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"make run exited {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"no /health after {timeout}s:\n{log.read_text()[-4000:]}")


@pytest.mark.timeout(1500)
def test_every_readme_command_works_as_printed_after_make_run(clone: Path):
    readme = (clone / "README.md").read_text()
    examples = readme_block(readme, "Then, for example:")
    operations = readme_block(readme, "## Operations")
    assert examples[0].startswith(".venv/bin/python manage.py seed_demo") and examples[-1].startswith("curl")

    port = free_port()
    log = clone.parent / "make-run.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=clone,
            env=newcomer_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make, its shell and gunicorn
        )
    try:
        wait_for_health(f"http://127.0.0.1:{port}/health", server, log, timeout=900)
        first_run = log.read_text()
        assert "Wrote .env" in first_run and "Created the first admin" in first_run
        env_file = (clone / ".env").read_text()
        assert "DEBUG=true" in env_file and re.search(r"^SECRET_KEY=\S{50,}$", env_file, re.M)
        assert (clone / ".env").stat().st_mode & 0o077 == 0

        def second_terminal(command: str) -> subprocess.CompletedProcess[str]:
            # The README's port is 8000; this run serves on a free one.
            command = command.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=clone,
                env=newcomer_env(),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            return result

        raw_key = None
        for command in examples:
            if "sk_live_..." in command:
                assert raw_key, "the README prints a key before it uses one"
                command = command.replace("sk_live_...", raw_key)
            result = second_terminal(command)
            if "create_api_key" in command:
                raw_key = result.stdout.strip().splitlines()[-1]
                assert raw_key.startswith("sk_live_")
            if command.startswith("curl"):
                body = json.loads(result.stdout)
                assert "results" in body, result.stdout  # the session list, not a 401's detail

        for command in operations:
            if command in NOT_RUN:
                continue
            result = second_terminal(command)
            if command.startswith("curl"):
                assert json.loads(result.stdout), result.stdout
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
