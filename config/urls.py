from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from accounts.views import UserViewSet
from agent_sessions.views import SessionMessagesView, SessionViewSet
from apikeys.views import APIKeyViewSet
from audit.views import AuditLogViewSet
from config import health, views

router = DefaultRouter()
router.include_root_view = False
router.register("users", UserViewSet, basename="user")
router.register("api-keys", APIKeyViewSet, basename="api-key")
router.register("sessions", SessionViewSet, basename="session")
router.register("audit-logs", AuditLogViewSet, basename="audit-log")

api_v1 = [
    path("sessions/<uuid:session_pk>/messages/", SessionMessagesView.as_view(), name="session-messages"),
    *router.urls,
]

urlpatterns = [
    path("health", health.health, name="health"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
]

if settings.BENCH_ENDPOINTS:
    urlpatterns.append(path("_bench/hello", views.hello, name="bench-hello"))

handler400 = "config.views.bad_request"
handler403 = "config.views.permission_denied"
handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
