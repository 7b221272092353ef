"""The API's URLs: each app's routes sit under the app's own prefix, so a request is matched
against its app's routes only; the public paths and their names are what they always were."""

from __future__ import annotations

import uuid

import pytest
from django.urls import resolve, reverse

from config.observability.middleware import route_template

SESSION = uuid.UUID("0b6c1f0e-8a3f-4a57-9c52-3f0c7c1d2e4a")


@pytest.mark.parametrize(
    ("path", "name", "template"),
    [
        ("/api/v1/sessions/", "session-list", "/api/v1/sessions/"),
        ("/api/v1/sessions/stats/", "session-stats", "/api/v1/sessions/stats/"),
        (f"/api/v1/sessions/{SESSION}/", "session-detail", "/api/v1/sessions/{id}/"),
        (f"/api/v1/sessions/{SESSION}/complete/", "session-complete", "/api/v1/sessions/{id}/complete/"),
        (f"/api/v1/sessions/{SESSION}/messages/", "session-messages", "/api/v1/sessions/{session_id}/messages/"),
        (
            f"/api/v1/sessions/{SESSION}/messages/batch/",
            "session-messages-batch",
            "/api/v1/sessions/{session_id}/messages/batch/",
        ),
        ("/api/v1/users/", "user-list", "/api/v1/users/"),
        ("/api/v1/users/me/", "user-me", "/api/v1/users/me/"),
        (f"/api/v1/users/{SESSION}/", "user-detail", "/api/v1/users/{id}/"),
        ("/api/v1/api-keys/", "api-key-list", "/api/v1/api-keys/"),
        (f"/api/v1/api-keys/{SESSION}/rotate/", "api-key-rotate", "/api/v1/api-keys/{id}/rotate/"),
        ("/api/v1/audit-logs/", "audit-log-list", "/api/v1/audit-logs/"),
    ],
)
def test_each_public_path_resolves_to_its_name_and_route_template(path, name, template):
    match = resolve(path)
    assert match.url_name == name
    assert route_template(match.route) == template
    kwargs = {key: value for key, value in match.kwargs.items() if key != "format"}
    assert reverse(name, kwargs=kwargs) == path


@pytest.mark.parametrize(
    ("path", "other_apps"),
    [
        ("/api/v1/users/me/", ("session", "api-key", "audit-log")),
        ("/api/v1/api-keys/", ("session", "user", "audit-log")),
        ("/api/v1/audit-logs/", ("session", "user", "api-key")),
        (f"/api/v1/sessions/{SESSION}/", ("user", "api-key", "audit-log")),
    ],
)
def test_a_request_is_matched_against_its_own_apps_routes_only(path, other_apps):
    tried_names = {getattr(step, "name", None) for attempt in resolve(path).tried for step in attempt}
    tried_names.discard(None)
    assert not {name for name in tried_names if name.startswith(other_apps)}, tried_names


@pytest.mark.parametrize("path", ["/api/v1/users/me/", f"/api/v1/sessions/{SESSION}/messages/"])
def test_an_api_request_is_matched_before_the_probes_and_staff_pages(path):
    match = resolve(path)
    tried_names = {getattr(step, "name", None) for attempt in match.tried for step in attempt}
    assert not {name for name in tried_names if name and name.startswith(("health", "schema", "docs", "admin"))}
    assert match.tried[0][0].pattern.describe().startswith("'api/v1/'"), match.tried[0]


@pytest.mark.parametrize(("path", "name"), [("/health/live", "health-live"), ("/admin/", "index")])
def test_probes_and_staff_pages_still_resolve_after_the_api(path, name):
    assert resolve(path).url_name == name
