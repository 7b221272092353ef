"""The project's URLs: each app's routes are included by name; the project adds health probes,
the schema and its docs, the admin, and the JSON error handlers."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config import health, views

# Each app under its own prefix, the busiest (agents' sessions and messages) first: a request
# is matched against its own app's routes only. (Under one shared "" prefix every app's routes
# were tried in turn, each miss recorded in Django's list of tried patterns: a quarter of a
# users/me/ request's URL resolution went there, bench/README.md.)
api_v1 = [
    path("sessions/", include("agent_sessions.urls")),
    path("users/", include("accounts.urls")),
    path("api-keys/", include("apikeys.urls")),
    path("audit-logs/", include("audit.urls")),
]

# The API first, the probes next: a request is matched against the patterns before its own, and
# agents' API requests are most of the traffic (bench/README.md, "Sixth round").
urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("health", health.health, name="health"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("health/startup", health.startup, name="health-startup"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", views.SwaggerDocsView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", views.RedocDocsView.as_view(url_name="schema"), name="redoc"),
    path("admin/", admin.site.urls),
]

if settings.BENCH_ENDPOINTS:
    # First, as the bare floor's only pattern is: the project hello measures what the project
    # adds to every request (its middleware and request log), not the misses of a route that
    # production never serves (BENCH_ENDPOINTS is off there).
    urlpatterns.insert(0, path("_bench/hello", views.hello, name="bench-hello"))

handler400 = "config.views.bad_request"
handler403 = "config.views.permission_denied"
handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
