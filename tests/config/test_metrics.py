"""GET /metrics in this process (single-process mode): access, route templates, the counters
recorded where things happen. The multiprocess sum under gunicorn is tests/reliability/test_prometheus.py."""

from __future__ import annotations

import logging
import os
import uuid

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from apikeys import keys
from apikeys.authentication import forget_recent_keys
from apikeys.services import api_key_revoke
from config.context import _trusted_networks
from config.observability.middleware import route_template
from tests.conftest import make_client, run_python

pytestmark = pytest.mark.django_db


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client, **extra) -> dict[str, list]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.content.decode())}


def test_metrics_are_served_to_loopback(anon):
    families = scrape(anon)
    assert "agent_platform_http_requests" in families
    assert "agent_platform_build_info" in families
    assert families["agent_platform_build_info"][0].labels == {"version": "1.0.0"}
    for name in ("agent_platform_worker_resident_memory_bytes", "agent_platform_worker_open_fds"):
        assert families[name][0].value > 0


def test_metrics_are_404_to_anyone_else(anon):
    response = anon.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 404
    assert b"agent_platform" not in response.content


def test_an_empty_allow_list_serves_no_address(anon, settings):
    settings.METRICS_ALLOWED_NETWORKS = []
    assert anon.get("/metrics").status_code == 404


def test_the_metrics_token_opens_them_from_anywhere(anon, settings):
    settings.METRICS_TOKEN = "scrape-token-0123456789"
    assert anon.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    scrape(anon, REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-token-0123456789")


def test_a_forwarded_address_is_judged_not_the_proxy(anon, settings):
    # Behind a trusted proxy on loopback, the client's own address decides.
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    _trusted_networks.cache_clear()
    try:
        assert anon.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 404
        assert anon.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200
    finally:
        settings.TRUSTED_PROXIES = []
        _trusted_networks.cache_clear()


def test_requests_are_counted_by_route_template(alice):
    session = alice.client.post("/api/v1/sessions/", {"agent_id": "a", "title": "t"}, format="json").json()
    labels = {"method": "GET", "route": "/api/v1/sessions/{id}/", "status": "2xx"}
    before = sample("agent_platform_http_requests_total", **labels)
    observed = sample("agent_platform_http_request_duration_seconds_count", method="GET", route=labels["route"])

    for _ in range(3):
        assert alice.client.get(f"/api/v1/sessions/{session['id']}/?x=1").status_code == 200
    assert alice.client.get(f"/api/v1/sessions/{uuid.uuid4()}/").status_code == 404

    assert sample("agent_platform_http_requests_total", **labels) == before + 3
    assert sample("agent_platform_http_request_duration_seconds_count", method="GET", route=labels["route"]) == (
        observed + 4
    )
    assert sample("agent_platform_http_requests_total", **{**labels, "status": "4xx"}) >= 1
    families = scrape(alice.client)
    routes = {s.labels.get("route") for s in families["agent_platform_http_requests"]}
    assert not any(session["id"] in (route or "") or "?" in (route or "") for route in routes)


def test_unknown_paths_share_one_label(anon):
    before = sample("agent_platform_http_requests_total", method="GET", route="unmatched", status="4xx")
    anon.get(f"/no/such/{uuid.uuid4()}")
    assert sample("agent_platform_http_requests_total", method="GET", route="unmatched", status="4xx") == before + 1


def test_metrics_are_not_counted_nor_logged(anon, caplog):
    counted = sum(
        s.value for s in scrape(anon)["agent_platform_http_requests"] if s.labels.get("route", "").startswith("/metr")
    )
    unmatched = sample("agent_platform_http_requests_total", method="GET", route="unmatched", status="2xx")
    with caplog.at_level(logging.INFO, logger="request"):
        scrape(anon)
    assert not [r for r in caplog.records if r.name == "request"]
    assert counted == 0
    assert sample("agent_platform_http_requests_total", method="GET", route="unmatched", status="2xx") == unmatched


@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("api/v1/^sessions/(?P<pk>[^/.]+)/$", "/api/v1/sessions/{id}/"),
        ("api/v1/sessions/<uuid:session_pk>/messages/", "/api/v1/sessions/{session_id}/messages/"),
        ("api/v1/^keys/(?P<pk>[^/.]+)/rotate/$", "/api/v1/keys/{id}/rotate/"),
        ("health/ready", "/health/ready"),
    ],
)
def test_route_templates(route, template):
    assert route_template(route) == template


def test_auth_failures_are_counted_by_reason(alice, anon):
    before = sample("agent_platform_auth_failures_total", reason="invalid_key")
    assert make_client(keys.generate().raw).get("/api/v1/users/me/").status_code == 401
    assert sample("agent_platform_auth_failures_total", reason="invalid_key") == before + 1

    revoked_before = sample("agent_platform_auth_failures_total", reason="revoked")
    api_key_revoke(actor=None, api_key=alice.key)
    forget_recent_keys()
    assert alice.client.get("/api/v1/users/me/").status_code == 401
    assert sample("agent_platform_auth_failures_total", reason="revoked") == revoked_before + 1


def test_rate_limit_refusals_are_counted_by_tier(make_user, make_key, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "free": "2/hour"}
    user = make_user()
    _, raw = make_key(user, tier="free")
    client = make_client(raw)
    before = sample("agent_platform_rate_limit_refusals_total", tier="free")
    statuses = [client.get("/api/v1/users/me/").status_code for _ in range(4)]
    assert statuses.count(429) == 2
    assert sample("agent_platform_rate_limit_refusals_total", tier="free") == before + 2


def test_messages_and_tokens_are_counted(alice):
    session = alice.client.post("/api/v1/sessions/", {"agent_id": "a", "title": "t"}, format="json").json()
    messages = sample("agent_platform_messages_appended_total", role="assistant")
    tokens = sample("agent_platform_tokens_recorded_total")
    response = alice.client.post(
        f"/api/v1/sessions/{session['id']}/messages/",
        {"role": "assistant", "content": "hi", "token_count": 42},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert sample("agent_platform_messages_appended_total", role="assistant") == messages + 1
    assert sample("agent_platform_tokens_recorded_total") == tokens + 42


def test_pool_figures_are_published(alice):
    alice.client.get("/api/v1/users/me/")
    families = scrape(alice.client)
    assert families["agent_platform_db_pool_size"][0].value >= 1
    assert families["agent_platform_db_pool_max_size"][0].value == 15
    assert "agent_platform_db_pool_wait_seconds" in families
    assert "agent_platform_db_statement_timeouts" in families


def test_metrics_off_means_no_metrics_route(settings):
    settings.METRICS_ENABLED = False
    assert make_client().get("/metrics").status_code == 404


def test_a_malformed_allow_list_stops_startup_naming_the_variable():
    result = run_python("import django; django.setup()", env={"METRICS_ALLOWED_IPS": "127.0.0.1,not-an-address"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "METRICS_ALLOWED_IPS" in result.stderr


def test_gunicorn_removes_default_directories_of_masters_that_died(tmp_path, monkeypatch):
    import subprocess
    import sys

    from config.observability import gunicorn

    monkeypatch.setattr(gunicorn.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # unset; undone after the test, whatever sets it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f"{gunicorn.DEFAULT_PREFIX}{int(dead.stdout)}"
    abandoned.mkdir()
    (abandoned / "counter_1.db").write_bytes(b"x")
    alive = tmp_path / f"{gunicorn.DEFAULT_PREFIX}1"  # init: always running
    alive.mkdir()

    made = gunicorn.prepare_directory()
    try:
        assert made.is_dir() and made.name == f"{gunicorn.DEFAULT_PREFIX}{os.getpid()}"
        assert not abandoned.exists()
        assert alive.exists()
    finally:
        gunicorn.on_exit(None)
        gunicorn._made_default.clear()
    assert not made.exists()
