"""The project's URLs: each app's routes are included by name; the project adds health probes,
the schema and its docs, the admin, and the JSON error handlers."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config import health, views

# The apps' prefixes are disjoint; the busiest (agents' sessions and messages) is tried first.
api_v1 = [
    path("", include("agent_sessions.urls")),
    path("", include("accounts.urls")),
    path("", include("apikeys.urls")),
    path("", include("audit.urls")),
]

urlpatterns = [
    path("health", health.health, name="health"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("health/startup", health.startup, name="health-startup"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", views.SwaggerDocsView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", views.RedocDocsView.as_view(url_name="schema"), name="redoc"),
    path("admin/", admin.site.urls),
]

if settings.BENCH_ENDPOINTS:
    urlpatterns.append(path("_bench/hello", views.hello, name="bench-hello"))

handler400 = "config.views.bad_request"
handler403 = "config.views.permission_denied"
handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
