from rest_framework.routers import DefaultRouter

from audit.views import AuditLogViewSet

router = DefaultRouter()
router.include_root_view = False
router.register("", AuditLogViewSet, basename="audit-log")  # under audit-logs/ (config.urls)

urlpatterns = router.urls
