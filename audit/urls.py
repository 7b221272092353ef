from rest_framework.routers import DefaultRouter

from audit.views import AuditLogViewSet

router = DefaultRouter()
router.include_root_view = False
router.register("audit-logs", AuditLogViewSet, basename="audit-log")

urlpatterns = router.urls
