"""The whole API test suite, again, through a real PgBouncer in transaction pooling mode.

PgBouncer (the Debian package) runs in front of a private PostgreSQL; `pytest tests/api` runs
in a subprocess with DB_POOL_MODE=pgbouncer and DATABASE_URL pointing at PgBouncer, so the
test database is created, migrated and used through it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.reliability.servers import BASE_DIR, PgBouncer, PrivatePostgres, pgbouncer_binary, service_env

pytestmark = pytest.mark.slow


@pytest.fixture
def bouncer() -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        if os.environ.get("CI_REQUIRE_PGBOUNCER") == "1":
            pytest.fail("CI_REQUIRE_PGBOUNCER=1 but pgbouncer is not installed (apt-get install pgbouncer)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer); .ci/run installs it")
    pg = PrivatePostgres()
    try:
        pg.start()
        bouncer = PgBouncer(server_host="127.0.0.1", server_port=pg.port)
        bouncer.start()
        try:
            yield bouncer
        finally:
            bouncer.destroy()
    finally:
        pg.destroy()


def test_the_api_suite_passes_through_pgbouncer_in_transaction_mode(bouncer: PgBouncer) -> None:
    assert "pool_mode = transaction" in bouncer.ini.read_text()
    env = service_env(
        bouncer.url("postgres"),
        DB_POOL_MODE="pgbouncer",
        DB_TEST_NAME="test_through_pgbouncer",
        LOG_LEVEL="warning",
    )
    result = subprocess.run(
        # --reuse-db: the private server is thrown away afterwards, and DROP DATABASE would wait
        # for the server connections PgBouncer keeps open to it.
        [sys.executable, "-m", "pytest", "tests/api", "-q", "-p", "no:cacheprovider", "--reuse-db", "--create-db"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print("through pgbouncer:", summary)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 100, summary
    assert "skipped" not in summary, summary
    # And it really went through PgBouncer: its statistics show the test database's traffic.
    stats = bouncer.admin("SHOW STATS")
    assert "test_through_pgbouncer" in stats, stats
