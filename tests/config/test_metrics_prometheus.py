"""A real Prometheus (Debian's ``prometheus``) scrapes a 3-worker gunicorn every second: the
counts it reads are the sum over the workers, and a killed worker neither resets nor doubles them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import database_url
from tests.reliability.servers import Gunicorn, free_port, http, seed, service_env, wait_for_port

ROUTE = "/api/v1/sessions/{id}/"


def _prometheus_binary() -> str | None:
    found = shutil.which("prometheus")
    if found is None and os.environ.get("CI_REQUIRE_PROMETHEUS") == "1":
        pytest.fail("CI_REQUIRE_PROMETHEUS=1 but the prometheus binary is not installed (apt-get install prometheus)")
    return found


class Prometheus:
    def __init__(self, binary: str, target: str) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        config = self.dir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
            "scrape_configs:\n  - job_name: agent-platform\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = (self.dir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, timeout=60, process=self.process)
        self._wait_until_ready(timeout=60)

    def _wait_until_ready(self, *, timeout: float) -> None:
        # Prometheus listens before its TSDB is open, and answers the query API with 503 until
        # then; /-/ready turns 200 when it can serve queries (a CI run on a loaded machine hit
        # the 503 on its first query).
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited with {self.process.returncode}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError as error:
                status = repr(error)
            if status == 200:
                return
            time.sleep(0.1)
        pytest.fail(f"Prometheus was not ready within {timeout} s (last answer: {status})")

    def query(self, expression: str) -> float | None:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expression: str, expected: float, *, timeout: float = 30) -> float | None:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.query(expression)
            if value == expected:
                return value
            time.sleep(0.25)
        return value

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def served() -> Iterator[tuple[Gunicorn, dict[str, str], Path]]:
    multiproc = Path(tempfile.mkdtemp(prefix="metrics-test-"))
    (multiproc / "counter_1.db").write_bytes(b"left over from a previous run")
    env = service_env(database_url(connection.settings_dict["NAME"]), PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    made = seed(env)
    server = Gunicorn(env, workers=3)
    server.start()
    try:
        yield server, made, multiproc
    finally:
        output = server.stop()
        shutil.rmtree(multiproc, ignore_errors=True)
        assert "Traceback" not in output, output[-3000:]


def _get_session(server: Gunicorn, made: dict[str, str], count: int) -> None:
    for _ in range(count):
        reply = http("GET", f"{server.url}/api/v1/sessions/{made['session_id']}/?page=1", key=made["raw_key"])
        assert reply.status == 200, reply.body


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_prometheus_reads_the_sum_over_workers_and_a_killed_worker_changes_nothing(served):
    binary = _prometheus_binary()
    if binary is None:
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    server, made, multiproc = served
    assert not (multiproc / "counter_1.db").exists(), "the directory was not cleaned at start"
    prometheus = Prometheus(binary, f"127.0.0.1:{server.port}")
    try:
        requests = f'sum(agent_platform_http_requests_total{{method="GET",route="{ROUTE}",status="2xx"}})'
        latency = f'sum(agent_platform_http_request_duration_seconds_count{{method="GET",route="{ROUTE}"}})'
        assert prometheus.wait_for("up", 1) == 1, "Prometheus never scraped /metrics"

        _get_session(server, made, 60)
        assert prometheus.wait_for(requests, 60) == 60
        assert prometheus.query(latency) == 60
        # A new connection per request: more than one worker answered, so this is a sum.
        assert len(list(multiproc.glob("counter_*.db"))) >= 2
        assert (prometheus.query("agent_platform_db_pool_size") or 0) >= 1
        assert prometheus.query("agent_platform_db_pool_max_size") is not None
        assert prometheus.query("agent_platform_db_pool_waiting_requests") == 0
        # A checkout is timed; a sync worker keeps its checkout across requests for up to a second
        # (config.db.pool.holds_checkout), so the 60 requests took a few.
        assert 1 <= (prometheus.query("agent_platform_db_pool_wait_seconds_count") or 0) <= 60
        assert prometheus.query('agent_platform_build_info{version="1.0.0"}') == 1
        assert (prometheus.query("agent_platform_worker_resident_memory_bytes") or 0) > 0
        # The scrapes themselves are neither counted nor logged.
        assert prometheus.query('sum(agent_platform_http_requests_total{route=~"/metrics.*|unmatched"})') is None

        victim = sorted(server.worker_pids())[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in server.worker_pids() or len(server.worker_pids()) < 3:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.1)
        time.sleep(2.5)  # a few scrapes after the loss
        assert prometheus.query(requests) == 60, "the killed worker's requests were lost or doubled"

        _get_session(server, made, 30)
        assert prometheus.wait_for(requests, 90) == 90
        time.sleep(2.5)
        assert prometheus.query(requests) == 90
        assert prometheus.query(latency) == 90
        assert (prometheus.query("agent_platform_workers") or 0) <= 3
    finally:
        prometheus.stop()


def _readme_block(title: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index(f"# {title}\n")
    return text[start : text.index("```", start)]


def test_the_readmes_scrape_config_and_alerts_are_valid_for_prometheus(tmp_path):
    binary = _prometheus_binary()
    promtool = shutil.which("promtool")
    if binary is None or promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    token = tmp_path / "token"
    token.write_text("scrape-token")
    config = tmp_path / "prometheus.yml"
    config.write_text(_readme_block("prometheus.yml").replace("/etc/prometheus/agent-platform-token", str(token)))
    rules = tmp_path / "alerts.yml"
    rules.write_text(_readme_block("alerts.yml"))
    for args in (["check", "config", str(config)], ["check", "rules", str(rules)]):
        result = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "3 rules found" in result.stdout + result.stderr
