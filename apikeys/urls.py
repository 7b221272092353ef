from rest_framework.routers import DefaultRouter

from apikeys.views import APIKeyViewSet

router = DefaultRouter()
router.include_root_view = False
router.register("", APIKeyViewSet, basename="api-key")  # under api-keys/ (config.urls)

urlpatterns = router.urls
